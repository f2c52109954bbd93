import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { buildDecodeStepGraph, buildTeacherForcedGraph, pastKeyName, pastValueName, presentKeyName, presentValueName } from '../../src/model/llama-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import type { HostTensor } from '../../src/model/tensor.ts';

// Reference: test/fixtures/llama/*/expected.json, made by tools/llama_fixtures.py with transformers.
const FIXTURES = ['llama-gqa-untied', 'llama3-scaled-tied', 'qwen2-bias-tied'];
const dirOf = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);

interface Case {
  padding: 'left' | 'right';
  input_ids: number[][];
  attention_mask: number[][];
  logits: number[][][];
  log_probs: number[][];
}

const i64 = (rows: number[][]): HostTensor => ({
  dtype: 'int64',
  shape: [rows.length, rows[0].length],
  data: BigInt64Array.from(rows.flat().map(BigInt)),
});

function load(name: string) {
  const dir = dirOf(name);
  const cfg = readHfConfig(join(dir, 'config.json'));
  const weights = readSafetensorsDir(dir).weights;
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as { cases: Case[] };
  return { cfg, weights, cases: expected.cases };
}

for (const name of FIXTURES) {
  for (const [dtype, linear] of [['float32', 'gemm'], ['float32', 'matmul'], ['float64', 'matmul']] as const)
  test(`${name}: ${dtype} ${linear} teacher-forced logits and log-probs match transformers (≤ 1e-4)`, async () => {
    const { cfg, weights, cases } = load(name);
    const session = await createSession(serializeModel(buildTeacherForcedGraph(cfg, weights, { logits: true, dtype, linear })), {
      // ORT's 'extended' fusions turn x·sigmoid(x) into QuickGelu, which has no float64 kernel.
      optimization: dtype === 'float64' ? 'basic' : 'all',
    });
    for (const c of cases) {
      const out = await runSession(session, { input_ids: i64(c.input_ids), attention_mask: i64(c.attention_mask) });
      const [B, T] = [c.input_ids.length, c.input_ids[0].length];
      const V = cfg.vocabSize;
      assert.equal(out.logits.dtype, dtype);
      assert.deepEqual(out.logits.shape, [B, T, V]);
      assert.deepEqual(out.log_probs.shape, [B, T - 1]);
      let maxLogit = 0;
      let maxLp = 0;
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          if (!c.attention_mask[b][t]) continue;
          for (let v = 0; v < V; v++) maxLogit = Math.max(maxLogit, Math.abs((out.logits.data[(b * T + t) * V + v] as number) - c.logits[b][t][v]));
          if (t < T - 1 && c.attention_mask[b][t + 1]) maxLp = Math.max(maxLp, Math.abs((out.log_probs.data[b * (T - 1) + t] as number) - c.log_probs[b][t]));
        }
      }
      assert.ok(maxLogit <= 1e-4, `${c.padding} padding: max |Δlogit| = ${maxLogit}`);
      assert.ok(maxLp <= 1e-4, `${c.padding} padding: max |Δlog-prob| = ${maxLp}`);
    }
  });
}

for (const name of FIXTURES) {
  test(`${name}: KV-cache decoding (prefill, then one token at a time) reproduces the full-forward logits (≤ 1e-4)`, async () => {
    const { cfg, weights, cases } = load(name);
    const session = await createSession(serializeModel(buildDecodeStepGraph(cfg, weights)));
    const c = cases.find((x) => x.padding === 'left')!;
    const [B, T] = [c.input_ids.length, c.input_ids[0].length];
    const V = cfg.vocabSize;
    const prefill = 4; // left padding: every row's last real tokens are aligned at the end
    const kvDims = [cfg.numKvHeads, cfg.headDim];
    let past: Record<string, HostTensor> = {};
    for (let i = 0; i < cfg.numLayers; i++) {
      for (const n of [pastKeyName(i), pastValueName(i)]) past[n] = { dtype: 'float32', shape: [B, kvDims[0], 0, kvDims[1]], data: new Float32Array(0) };
    }
    let maxErr = 0;
    for (let start = 0, end = prefill; end <= T; start = end, end++) {
      const ids = c.input_ids.map((r) => r.slice(start, end));
      const mask = c.attention_mask.map((r) => r.slice(0, end));
      const pos = c.attention_mask.map((r) => r.slice(start, end).map((m, j) => (m ? r.slice(0, start + j + 1).reduce((a, x) => a + x, 0) - 1 : 0)));
      const out = await runSession(session, { input_ids: i64(ids), position_ids: i64(pos), attention_mask: i64(mask), ...past });
      assert.deepEqual(out.logits.shape, [B, V]);
      for (let b = 0; b < B; b++) {
        if (!c.attention_mask[b][end - 1]) continue;
        for (let v = 0; v < V; v++) maxErr = Math.max(maxErr, Math.abs((out.logits.data[b * V + v] as number) - c.logits[b][end - 1][v]));
      }
      past = {};
      for (let i = 0; i < cfg.numLayers; i++) {
        past[pastKeyName(i)] = out[presentKeyName(i)];
        past[pastValueName(i)] = out[presentValueName(i)];
        assert.deepEqual(out[presentKeyName(i)].shape, [B, kvDims[0], end, kvDims[1]]);
      }
    }
    assert.ok(maxErr <= 1e-4, `max |Δlogit| = ${maxErr}`);
  });
}
