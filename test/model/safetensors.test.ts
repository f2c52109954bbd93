import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, copyFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  encodeSafetensors,
  fromFloat32,
  parseSafetensors,
  readSafetensors,
  readSafetensorsDir,
  toFloat32,
  writeSafetensors,
} from '../../src/model/safetensors.ts';
import type { Weights } from '../../src/model/tensor.ts';

const FIX = new URL('../fixtures/safetensors/', import.meta.url).pathname;
const expected = JSON.parse(readFileSync(join(FIX, 'python-dtypes.json'), 'utf8')) as Record<
  string,
  { shape: number[]; values: Array<number | string> }
>;

function num(v: number | string): number {
  return typeof v === 'number' ? v : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : NaN;
}

function withTmp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'st-test-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('reads every dtype of a file written by Python safetensors, keeping dtype, shape and values', () => {
  const { weights, metadata } = readSafetensors(join(FIX, 'python-dtypes.safetensors'));
  assert.deepEqual(metadata, new Map([['format', 'pt']]));
  const dtypes: Record<string, string> = {
    f32: 'float32', f64: 'float64', f16: 'float16', bf16: 'bfloat16', special_f16: 'float16', special_bf16: 'bfloat16',
    i64: 'int64', i32: 'int32', i8: 'int8', u8: 'uint8', mask: 'bool', scalar: 'float32', empty: 'float32',
  };
  assert.deepEqual([...weights.keys()].sort(), Object.keys(dtypes).sort());
  for (const [name, t] of weights) {
    assert.equal(t.dtype, dtypes[name], name);
    assert.deepEqual(t.shape, expected[name].shape, name);
    const got = t.dtype === 'int64' ? [...(t.data as BigInt64Array)].map(String) : Array.from(t.data as ArrayLike<number>, Number);
    const want = t.dtype === 'int64' ? expected[name].values : expected[name].values.map(num);
    assert.deepEqual(got, want, name);
  }
});

test('a Python-written file reads and writes back byte-identically', () => {
  const bytes = readFileSync(join(FIX, 'python-dtypes.safetensors'));
  const file = parseSafetensors(bytes, 'python-dtypes.safetensors');
  assert.ok(Buffer.from(encodeSafetensors(file.weights, file.metadata)).equals(bytes));
  for (const shard of readdirSync(join(FIX, 'sharded')).filter((f) => f.endsWith('.safetensors'))) {
    const b = readFileSync(join(FIX, 'sharded', shard));
    const f = parseSafetensors(b, shard);
    assert.ok(Buffer.from(encodeSafetensors(f.weights, f.metadata)).equals(b), shard);
  }
});

test('float conversions: f16/bf16 → f32 exact, f32 → f16/bf16 rounds as torch does', () => {
  const { weights } = readSafetensors(join(FIX, 'python-dtypes.safetensors'));
  for (const [name, source] of [
    ['f16', '_f32_source'],
    ['bf16', '_f32_source'],
    ['special_f16', '_special_source'],
    ['special_bf16', '_special_source'],
  ] as const) {
    const t = weights.get(name)!;
    const src = Float32Array.from(expected[source].values.map(num));
    const ours = fromFloat32(src, t.shape, t.dtype as 'float16' | 'bfloat16');
    assert.deepEqual([...ours.data], [...t.data], `${name}: rounding from float32`);
    // Widening back is exact: re-narrowing the widened values gives the same bits.
    const widened = toFloat32(t);
    assert.deepEqual([...fromFloat32(widened, t.shape, t.dtype as 'float16').data], [...t.data], `${name}: widening`);
  }
  const f32 = weights.get('f32')!;
  assert.equal(toFloat32(f32), f32.data, 'float32 is returned as is');
  const f64 = toFloat32(weights.get('f64')!);
  assert.deepEqual([...f64], [...(f32.data as Float32Array)]);
});

test('our files are deterministic, 8-byte aligned and round-trip byte-identically through a file', () => {
  withTmp((dir) => {
    const weights: Weights = new Map();
    weights.set('z.weight', { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
    weights.set('a.bias', { dtype: 'bfloat16', shape: [3], data: Uint16Array.from([1, 2, 3]) });
    weights.set('ids', { dtype: 'int64', shape: [1], data: BigInt64Array.from([5n]) });
    weights.set('flag', { dtype: 'bool', shape: [1], data: Uint8Array.from([1]) });
    const reversed: Weights = new Map([...weights].reverse());
    const a = encodeSafetensors(weights, { format: 'pt' });
    assert.ok(Buffer.from(a).equals(Buffer.from(encodeSafetensors(reversed, { format: 'pt' }))), 'insertion order does not matter');
    const headerLen = Number(Buffer.from(a).readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0);
    const header = JSON.parse(Buffer.from(a.subarray(8, 8 + headerLen)).toString('utf8'));
    assert.deepEqual(Object.keys(header), ['__metadata__', 'ids', 'z.weight', 'a.bias', 'flag'], 'widest dtype first, then name');
    const path = join(dir, 'm.safetensors');
    writeSafetensors(path, weights, { format: 'pt' });
    const onDisk = readFileSync(path);
    assert.ok(onDisk.equals(Buffer.from(a)));
    const back = readSafetensors(path);
    assert.ok(Buffer.from(encodeSafetensors(back.weights, back.metadata)).equals(onDisk));
    assert.deepEqual([...back.weights.get('z.weight')!.data], [1, 2, 3, 4, 5, 6]);
  });
});

test('reads a sharded checkpoint written by transformers via model.safetensors.index.json', () => {
  const { weights } = readSafetensorsDir(join(FIX, 'sharded'));
  const index = JSON.parse(readFileSync(join(FIX, 'sharded', 'model.safetensors.index.json'), 'utf8'));
  assert.deepEqual([...weights.keys()].sort(), Object.keys(index.weight_map).sort());
  assert.ok(new Set(Object.values(index.weight_map)).size > 1, 'fixture really has several shards');
  assert.deepEqual(weights.get('model.embed_tokens.weight')!.shape, [64, 16]);
  assert.deepEqual(weights.get('model.layers.1.self_attn.k_proj.weight')!.shape, [8, 16]);
  let total = 0;
  for (const t of weights.values()) total += t.data.byteLength;
  assert.equal(total, index.metadata.total_size);
});

test('sharded read: a tensor missing from its shard is named in the error', () => {
  withTmp((dir) => {
    for (const f of readdirSync(join(FIX, 'sharded'))) copyFileSync(join(FIX, 'sharded', f), join(dir, f));
    const indexPath = join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8'));
    index.weight_map['model.norm.weight'] = 'model-00001-of-00004.safetensors';
    writeFileSync(indexPath, JSON.stringify(index));
    assert.throws(() => readSafetensorsDir(dir), /model-00001-of-00004\.safetensors: tensor "model\.norm\.weight"/);
  });
  assert.throws(() => readSafetensorsDir(FIX), /no model\.safetensors and no model\.safetensors\.index\.json/);
});

test('bad files give errors naming the file and the problem', () => {
  const good = Buffer.from(
    encodeSafetensors(new Map([['w', { dtype: 'float32', shape: [4], data: new Float32Array(4) }]])),
  );
  const header = (json: string, dataBytes = 0) => {
    const h = Buffer.from(json);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, Buffer.alloc(dataBytes)]);
  };
  const cases: Array<[Buffer, RegExp]> = [
    [good.subarray(0, 5), /bad\.safetensors: .*truncated: 5 bytes/],
    [good.subarray(0, good.length - 3), /bad\.safetensors: .*tensor "w": data_offsets \[0, 16\] out of range.*13 bytes/],
    [good.subarray(0, 20), /bad\.safetensors: .*truncated: header length \d+ but only 12 bytes/],
    [Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0]), good.subarray(8)]), /header length \d+ exceeds/],
    [header('{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]'), /header is not valid UTF-8 JSON/],
    [header('{"w": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}}', 4), /tensor "w": unknown or unsupported dtype "F8_E4M3"/],
    [header('{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}', 12), /tensor "w": data_offsets \[0, 12\] span 12 bytes but float32\[4\] needs 16/],
    [header('{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', 4), /tensor "w": shape \[-1\]/],
    [header('{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}', 3), /tensor "b": data_offsets start at 1, expected 2/],
    [header('{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}', 5), /data section has 5 bytes but the tensors cover 2/],
    [header('[1, 2]'), /header is not a JSON object/],
  ];
  for (const [bytes, pattern] of cases) assert.throws(() => parseSafetensors(bytes, 'bad.safetensors'), pattern);
  withTmp((dir) => {
    const path = join(dir, 'cut.safetensors');
    writeFileSync(path, good.subarray(0, good.length - 1));
    assert.throws(() => readSafetensors(path), new RegExp(`${path}: invalid safetensors file: .*out of range`));
  });
});

test('unaligned tensors are copied, aligned ones are views of the file buffer', () => {
  const weights: Weights = new Map([
    ['a', { dtype: 'uint8', shape: [1], data: Uint8Array.from([9]) }],
    ['b', { dtype: 'float32', shape: [2], data: Float32Array.from([1.5, -2]) }],
  ]);
  const bytes = Buffer.from(encodeSafetensors(weights));
  const shifted = new Uint8Array(bytes.length + 1).subarray(1);
  shifted.set(bytes);
  const back = parseSafetensors(shifted);
  assert.deepEqual([...back.weights.get('b')!.data], [1.5, -2]);
  const aligned = parseSafetensors(new Uint8Array(bytes));
  assert.equal(aligned.weights.get('b')!.data.buffer.byteLength, bytes.length, 'a view, not a copy');
});
