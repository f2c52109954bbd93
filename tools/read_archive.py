#!/usr/bin/env python3
"""Reads a `dice archive` directory with pyarrow (a reader that is not ours) and checks it.

Usage: /work/pyenv/bin/python tools/read_archive.py DIR [--show TOPIC] [--rows N]

For every topic in DIR/manifest.json: opens DIR/<file> with pyarrow.parquet, prints its schema
summary, row count and row groups, and checks that the file's sha256 and rows match the manifest
(count, decode errors) and that (bus_partition, bus_offset) is unique. --show prints the first N rows of one
topic as Python dicts (raw values shortened). Exits 1 on any mismatch.
"""
import argparse
import hashlib
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq


def shorten(v, limit=80):
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    if isinstance(v, str) and len(v) > limit:
        return v[:limit] + "…"
    if isinstance(v, list):
        return [shorten(x, limit) for x in v[:8]] + (["…"] if len(v) > 8 else [])
    if isinstance(v, dict):
        return {k: shorten(x, limit) for k, x in v.items()}
    return v


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--show", help="topic base name (file stem) whose rows to print")
    ap.add_argument("--rows", type=int, default=3)
    args = ap.parse_args()

    manifest_path = args.dir / "manifest.json"
    if not manifest_path.exists():
        print(f"{manifest_path}: missing (not a dice archive directory?)", file=sys.stderr)
        return 1
    manifest = json.loads(manifest_path.read_text())
    print(f"archive of {manifest['bus']} namespace={manifest['namespace']} created {manifest['createdAt']}")
    problems = []
    for t in manifest["topics"]:
        path = args.dir / t["file"]
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha != t.get("sha256"):
            problems.append(f"{t['file']}: sha256 {sha}, manifest says {t.get('sha256')}")
        pf = pq.ParquetFile(path)
        table = pf.read()
        n = table.num_rows
        decoded = [c for c in table.column_names if not c.startswith("bus_") and c != "decode_error"]
        errors = n - table.column("decode_error").null_count if "decode_error" in table.column_names else 0
        print(
            f"  {t['topic']:<24} {n:>7} rows  {pf.metadata.num_row_groups} row groups  "
            f"{len(decoded)} decoded columns  {errors} decode errors  ({pf.metadata.created_by})"
        )
        if n != t["records"]:
            problems.append(f"{t['file']}: {n} rows, manifest says {t['records']}")
        if errors != t["decodeErrors"]:
            problems.append(f"{t['file']}: {errors} decode errors, manifest says {t['decodeErrors']}")
        positions = set(zip(table.column("bus_partition").to_pylist(), table.column("bus_offset").to_pylist()))
        if len(positions) != n:
            problems.append(f"{t['file']}: (bus_partition, bus_offset) is not unique")
        if args.show and path.stem == args.show:
            print(f"  schema of {t['file']}:")
            for field in table.schema:
                print(f"    {field.name}: {field.type}")
            for row in table.slice(0, args.rows).to_pylist():
                print("   ", shorten(row))
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
