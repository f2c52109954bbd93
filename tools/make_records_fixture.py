"""Writes test/fixtures/records/sample.parquet with pyarrow: an independent Parquet writer for the
records-file reader test (src/io/records-file.ts). Run: /work/pyenv/bin/python tools/make_records_fixture.py"""
import pyarrow as pa
import pyarrow.parquet as pq

rows = {
    "promptId": ["p0", "p1", "p2"],
    "prompt": ["héllo ✓ 😀", "plain", "中文提示"],
    "messages": [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [],
        [{"role": "user", "content": "ça va?"}],
    ],
    "token_ids": [[1, 2, 3], [], [2147483647, -2147483648]],
    "score": [0.1, -1.0e-300, 3.141592653589793],
    "n": [1, 2**40, -7],
    "flag": [True, False, True],
    "note": ["x", None, "z"],
}
schema = pa.schema([
    ("promptId", pa.string()),
    ("prompt", pa.string()),
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("token_ids", pa.list_(pa.int32())),
    ("score", pa.float64()),
    ("n", pa.int64()),
    ("flag", pa.bool_()),
    ("note", pa.string()),
])
pq.write_table(pa.table(rows, schema=schema), "test/fixtures/records/sample.parquet", row_group_size=2)
