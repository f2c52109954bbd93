import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, type Llama, type Token } from 'node-llama-cpp';
import { sha256File, verifyCheckpoint } from '../../src/model/checkpoint.ts';
import { writeInitModel } from '../../src/model/init.ts';
import { exportGguf, type ExportType } from '../../src/model/gguf/export.ts';
import { openGgufStream } from '../../src/model/gguf/byte-stream.ts';
import { importGguf } from '../../src/model/gguf/import.ts';
import { readGgufHeader } from '../../src/model/gguf/reader.ts';
import { buildTeacherForcedGraph } from '../../src/model/llama-graph.ts';
import { loadModel, type LoadedModel } from '../../src/model/load.ts';
import { toFloat32 } from '../../src/model/safetensors.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';

// llama.cpp (node-llama-cpp's prebuilt CPU binary) is the independent reader of our GGUFs. The models
// are the import-test fixtures (tools/make_gguf_fixtures.py), imported by us first.
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'gguf');
const PROMPT = [1, 40, 7, 100, 250, 5, 33, 61, 12, 200, 3, 150];
const STRINGS = ['Hello world, café 1234567', "  they'll see\n\n\tcode: def f(x): return x**2", 'unicode 日本語 🤖 naïve', '<|im_start|>user\nhi<|im_end|>\n'];

let llama: Llama;
test.before(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
});
test.after(async () => {
  await llama.dispose();
});

/** Our engine: log-probs of PROMPT's tokens (teacher-forced) and the greedy continuation. */
async function ours(m: LoadedModel, prompt: number[], steps: number): Promise<{ logProbs: number[]; greedy: number[] }> {
  const session = await createSession(serializeModel(buildTeacherForcedGraph(m.config, m.weights, { logits: true })));
  const run = (ids: number[]) =>
    runSession(session, {
      input_ids: { dtype: 'int64', shape: [1, ids.length], data: BigInt64Array.from(ids.map(BigInt)) },
      attention_mask: { dtype: 'int64', shape: [1, ids.length], data: new BigInt64Array(ids.length).fill(1n) },
    });
  const logProbs = [...((await run(prompt)).log_probs.data as Float32Array)];
  const seq = [...prompt];
  const V = m.config.vocabSize;
  for (let s = 0; s < steps; s++) {
    const logits = (await run(seq)).logits.data as Float32Array;
    let best = 0;
    for (let v = 1; v < V; v++) if (logits[(seq.length - 1) * V + v] > logits[(seq.length - 1) * V + best]) best = v;
    seq.push(best);
  }
  return { logProbs, greedy: seq.slice(prompt.length) };
}

/** llama.cpp on a GGUF: the same two things, and its tokenizer's ids for `strings`. */
async function theirs(path: string, prompt: number[], steps: number, strings: string[]) {
  const model = await llama.loadModel({ modelPath: path });
  try {
    // f32 KV cache and no flash attention: llama.cpp's defaults (f16 cache) round K/V to f16, ~1e-3 of a log-prob
    const ctx = await model.createContext({ contextSize: 64, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' });
    const seq = ctx.getSequence();
    const out = await seq.controlledEvaluate(prompt.map((t) => [t as Token, { generateNext: { probabilities: true } }]));
    const logProbs = prompt.slice(1).map((next, i) => Math.log(out[i]!.next.probabilities!.get(next as Token)!));
    await seq.clearHistory();
    const greedy: number[] = [];
    for await (const token of seq.evaluate(prompt as Token[], { temperature: 0 })) {
      greedy.push(token);
      if (greedy.length === steps) break;
    }
    const tokens = strings.map((s) => model.tokenize(s, true) as number[]);
    const metadata = model.fileInfo.metadata as unknown as Record<string, unknown>;
    await ctx.dispose();
    return { logProbs, greedy, tokens, metadata };
  } finally {
    await model.dispose();
  }
}

const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

/** Models to export: the fixture GGUFs imported by us (with manifests), and dice init models with the project's tokenizers. */
const SOURCES: Array<{ name: string; make: (dir: string) => Promise<unknown> }> = [
  { name: 'llama fixture (imported)', make: (dir) => importGguf(join(FIXTURES, 'llama.gguf'), dir) },
  { name: 'qwen2 fixture (imported)', make: (dir) => importGguf(join(FIXTURES, 'qwen2.gguf'), dir) },
  // a wide init (std 0.2) so the greedy choice is not a near-tie between float roundings
  { name: 'dice init tiny (llama3 tokenizer)', make: async (dir) => writeInitModel('tiny', dir, { seed: 3, initializerRange: 0.2 }) },
  { name: 'dice init tiny-qwen2 (qwen2 tokenizer)', make: async (dir) => writeInitModel('tiny-qwen2', dir, { seed: 3, initializerRange: 0.2 }) },
];

for (const source of SOURCES) {
  test(`${source.name}: llama.cpp loads our f32 export; its greedy tokens and log-probs equal our engine's (≤ 1e-3); tokenizer, chat template and dice.* lineage travel`, async (t) => {
    const tmp = mkdtempSync(join(tmpdir(), 'gguf-export-'));
    try {
      const dir = join(tmp, 'model');
      await source.make(dir);
      const out = join(tmp, 'model.f32.gguf');
      exportGguf(dir, out, 'f32');
      const m = loadModel(dir);
      const a = await ours(m, PROMPT, 8);
      const b = await theirs(out, PROMPT, 8, STRINGS);
      t.diagnostic(`max |Δ log-prob| llama.cpp vs our engine: ${maxDiff(a.logProbs, b.logProbs).toExponential(2)} over ${a.logProbs.length} tokens`);
      assert.ok(maxDiff(a.logProbs, b.logProbs) <= 1e-3, `max |Δ log-prob| = ${maxDiff(a.logProbs, b.logProbs)}`);
      assert.deepEqual(b.greedy, a.greedy);
      for (const [i, s] of STRINGS.entries()) assert.deepEqual(b.tokens[i], m.tokenizer.encode(s, { addSpecialTokens: false }), JSON.stringify(s));
      const dice = (b.metadata.dice as { checkpoint: Record<string, string> }).checkpoint;
      if (existsSync(join(dir, 'manifest.json'))) {
        const manifest = verifyCheckpoint(dir);
        assert.equal(dice.version, manifest.version);
        assert.equal(dice.sha256, manifest.sha256);
      } else {
        assert.equal(dice.sha256, sha256File(join(dir, 'model.safetensors')));
      }
      assert.equal((b.metadata.tokenizer as { chat_template: string }).chat_template, m.chatTemplate!.source);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
}

test('import(export(x)) = x for f32 (weights bit for bit, config, tokenizer ids, chat template); q8_0/q4_0 read back within a quantisation step; a bad --type is refused', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'gguf-roundtrip-'));
  try {
    for (const arch of ['llama', 'qwen2']) {
      const x = join(tmp, `${arch}-x`);
      await importGguf(join(FIXTURES, `${arch}.gguf`), x);
      exportGguf(x, join(tmp, `${arch}.gguf`), 'f32');
      const y = join(tmp, `${arch}-y`);
      await importGguf(join(tmp, `${arch}.gguf`), y);
      assert.ok(readFileSync(join(x, 'model.safetensors')).equals(readFileSync(join(y, 'model.safetensors'))), `${arch}: model.safetensors differs`);
      assert.equal(readFileSync(join(y, 'config.json'), 'utf8'), readFileSync(join(x, 'config.json'), 'utf8'));
      const [mx, my] = [loadModel(x), loadModel(y)];
      for (const s of STRINGS) assert.deepEqual(my.tokenizer.encode(s), mx.tokenizer.encode(s));
      assert.equal(my.chatTemplate!.source, mx.chatTemplate!.source);
    }
    // quantised exports read back (by our transformers-exact reader) within the rounding of each block's step d
    // (half a step; Q4_0 clips the side opposite its largest value at 7 steps: up to one step), plus d's f16 rounding
    for (const type of ['q8_0', 'q4_0'] as ExportType[]) {
      exportGguf(join(tmp, 'qwen2-x'), join(tmp, `${type}.gguf`), type);
      await importGguf(join(tmp, `${type}.gguf`), join(tmp, `${type}-y`));
      const [x, y] = [loadModel(join(tmp, 'qwen2-x')).weights, loadModel(join(tmp, `${type}-y`)).weights];
      const levels = type === 'q8_0' ? 127 : 8;
      const bound = (type === 'q8_0' ? 0.5 : 1) + levels * 2 ** -11 + 1e-3;
      for (const [name, t] of x) {
        const a = toFloat32(t), b = toFloat32(y.get(name)!);
        if (t.shape.length === 1) { assert.deepEqual(b, a, `${name}: vectors stay f32`); continue; }
        let worst = 0;
        for (let blk = 0; blk < a.length; blk += 32) {
          let amax = 0;
          for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(a[blk + j]));
          for (let j = 0; j < 32; j++) worst = Math.max(worst, Math.abs(a[blk + j] - b[blk + j]) / (amax / levels || 1));
        }
        assert.ok(worst <= bound, `${type} ${name}: an element is ${worst.toFixed(3)} steps off`);
      }
    }
    assert.throws(() => exportGguf(join(tmp, 'llama-x'), join(tmp, 'bad.gguf'), 'q5_1' as ExportType), /--type q5_1: must be one of f32, f16, q8_0, q4_0/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('f16, q8_0 and q4_0 exports load in llama.cpp; their log-prob drift against the f32 export is reported', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'gguf-quant-'));
  try {
    const dir = join(tmp, 'model');
    await importGguf(join(FIXTURES, 'llama.gguf'), dir);
    const f32 = await theirs((exportGguf(dir, join(tmp, 'f32.gguf'), 'f32'), join(tmp, 'f32.gguf')), PROMPT, 1, []);
    for (const type of ['f16', 'q8_0', 'q4_0'] as ExportType[]) {
      const path = join(tmp, `${type}.gguf`);
      exportGguf(dir, path, type);
      const header = await readGgufHeader(openGgufStream(path));
      assert.equal(header.metadata.get('general.file_type'), { f16: 1, q8_0: 7, q4_0: 2 }[type as 'f16']);
      const q = await theirs(path, PROMPT, 1, []);
      const drift = maxDiff(q.logProbs, f32.logProbs);
      const mean = q.logProbs.reduce((s, x, i) => s + Math.abs(x - f32.logProbs[i]), 0) / q.logProbs.length;
      t.diagnostic(`${type}: log-prob drift vs f32 in llama.cpp: max ${drift.toExponential(2)}, mean ${mean.toExponential(2)} over ${q.logProbs.length} tokens`);
      assert.ok(drift < { f16: 1e-2, q8_0: 0.1, q4_0: 1 }[type as 'f16'], `${type}: drift ${drift}`);
      assert.ok(drift > 0, `${type}: no drift at all — was it quantised?`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
