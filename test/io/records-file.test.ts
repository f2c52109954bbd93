import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRecordEntries, readRecords, writeJsonl, RecordsFileError } from '../../src/io/records-file.ts';

const dir = mkdtempSync(join(tmpdir(), 'dice-records-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function all(path: string) {
  const out = [];
  for await (const r of readRecords(path)) out.push(r);
  return out;
}

test('reads JSONL: blank lines skipped, CRLF and BOM tolerated, unicode kept', async () => {
  const path = join(dir, 'a.jsonl');
  writeFileSync(path, '\uFEFF{"id":1,"t":"é😀"}\r\n\n{"id":2,"t":"x"}\n{"id":3}');
  assert.deepEqual(await all(path), [{ id: 1, t: 'é😀' }, { id: 2, t: 'x' }, { id: 3 }]);
  const locations = [];
  for await (const e of readRecordEntries(path)) locations.push(e.location);
  assert.deepEqual(locations, [`${path}:1`, `${path}:3`, `${path}:4`]);
});

test('reads JSONL larger than one stream chunk', async () => {
  const path = join(dir, 'big.jsonl');
  const lines = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ i, pad: 'ü'.repeat(i % 50) }));
  writeFileSync(path, lines.join('\n') + '\n');
  const got = await all(path);
  assert.equal(got.length, 5000);
  assert.deepEqual(got[4999], { i: 4999, pad: 'ü'.repeat(4999 % 50) });
});

test('JSONL errors name the file and line', async () => {
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, '{"ok":1}\n{"ok":2\n');
  await assert.rejects(all(bad), (e: Error) => e instanceof RecordsFileError && e.message.startsWith(`${bad}:2: invalid JSON`));
  const arr = join(dir, 'arr.jsonl');
  writeFileSync(arr, '{"ok":1}\n[1,2]\n');
  await assert.rejects(all(arr), new RegExp(`arr.jsonl:2: expected a JSON object per line, got an array`));
  const bin = join(dir, 'bin.jsonl');
  writeFileSync(bin, Buffer.concat([Buffer.from('{"ok":1}\n{"t":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]));
  await assert.rejects(all(bin), /bin\.jsonl:2: is not valid UTF-8/);
  await assert.rejects(all(join(dir, 'missing.jsonl')), /missing\.jsonl: no such file/);
});

test('reads a JSON array and names the bad element', async () => {
  const path = join(dir, 'a.json');
  writeFileSync(path, JSON.stringify([{ a: 1 }, { b: [1, 2] }]));
  assert.deepEqual(await all(path), [{ a: 1 }, { b: [1, 2] }]);
  writeFileSync(path, JSON.stringify([{ a: 1 }, 'x']));
  await assert.rejects(all(path), /a\.json\[1\]: expected a JSON object, got string/);
  writeFileSync(path, JSON.stringify({ a: 1 }));
  await assert.rejects(all(path), /expected a JSON array of records/);
});

test('reads Parquet written by pyarrow (tools/make_records_fixture.py)', async () => {
  const rows = await all('test/fixtures/records/sample.parquet');
  assert.equal(rows.length, 3);
  assert.deepEqual(rows[0], {
    promptId: 'p0',
    prompt: 'héllo ✓ 😀',
    messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }],
    token_ids: [1, 2, 3],
    score: 0.1,
    n: 1,
    flag: true,
    note: 'x',
  });
  assert.deepEqual(rows[1].messages, []);
  assert.equal(rows[1].score, -1.0e-300);
  assert.equal(rows[1].n, 2 ** 40);
  assert.equal(rows[1].note, null);
  assert.equal(rows[1].flag, false);
  assert.deepEqual(rows[2].token_ids, [2147483647, -2147483648]);
  assert.equal(rows[2].prompt, '中文提示');
  assert.equal(rows[2].score, Math.PI);
  assert.equal(rows[2].n, -7);
});

test('a file that is not Parquet is reported with its name', async () => {
  const path = join(dir, 'fake.parquet');
  writeFileSync(path, 'not parquet');
  await assert.rejects(all(path), /fake\.parquet: not a readable Parquet file/);
  await assert.rejects(all(join(dir, 'x.csv')), /cannot tell the format/);
});

test('writeJsonl round-trips through readRecords; typed arrays become lists, bytes base64', async () => {
  const path = join(dir, 'out.jsonl');
  const n = await writeJsonl(path, [
    { id: 'a', ids: new Int32Array([1, -2]), bytes: new Uint8Array([1, 2, 255]), x: 0.1 },
    { id: 'b', t: 'ü\n"q"' },
  ]);
  assert.equal(n, 2);
  assert.equal(readFileSync(path, 'utf8').split('\n').length, 3);
  assert.deepEqual(await all(path), [
    { id: 'a', ids: [1, -2], bytes: 'AQL/', x: 0.1 },
    { id: 'b', t: 'ü\n"q"' },
  ]);
});
