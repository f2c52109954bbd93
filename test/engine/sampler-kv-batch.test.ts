import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { buildDecodeStepGraph, newKeyName, newValueName, pastKeyName, pastValueName } from '../../src/model/llama-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import type { HostTensor } from '../../src/model/tensor.ts';
import { gatherRows, KvBatch } from '../../src/engine/sampler-kv-batch.ts';

// Reference logits: test/fixtures/llama/*/expected.json, made by tools/llama_fixtures.py with transformers.
const dirOf = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);
const i64 = (rows: number[][]): HostTensor => ({ dtype: 'int64', shape: [rows.length, rows[0].length], data: BigInt64Array.from(rows.flat().map(BigInt)) });

for (const name of ['llama-gqa-untied', 'qwen2-bias-tied']) {
  test(`${name}: the append-cache decode step over a preallocated KvBatch reproduces transformers' logits (≤ 1e-4)`, async () => {
    const dir = dirOf(name);
    const cfg = readHfConfig(join(dir, 'config.json'));
    const weights = readSafetensorsDir(dir).weights;
    const c = (JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')).cases as Array<{ padding: string; input_ids: number[][]; attention_mask: number[][]; logits: number[][][] }>).find((x) => x.padding === 'left')!;
    const session = await createSession(serializeModel(buildDecodeStepGraph(cfg, weights, { cache: 'append' })));
    const [B, T] = [c.input_ids.length, c.input_ids[0].length];
    const V = cfg.vocabSize;
    const prefill = 4;
    const newKv = (out: Record<string, HostTensor>, kind: 'key' | 'value') =>
      Array.from({ length: cfg.numLayers }, (_, i) => out[kind === 'key' ? newKeyName(i) : newValueName(i)].data as Float32Array);
    // prefill over an empty past, then a cache with room for 3 columns: the rest of the steps make it grow
    const empty = KvBatch.empty(cfg.numLayers, cfg.numKvHeads, cfg.headDim);
    const none = new KvBatch(B, 0, 0, new Uint8Array(0), empty.keys, empty.values, cfg.numKvHeads, cfg.headDim);
    const pos = (start: number, end: number) => c.attention_mask.map((r) => r.slice(start, end).map((m, j) => (m ? r.slice(0, start + j + 1).reduce((a, x) => a + x, 0) - 1 : 0)));
    const first = await runSession(session, { input_ids: i64(c.input_ids.map((r) => r.slice(0, prefill))), position_ids: i64(pos(0, prefill)), attention_mask: i64(c.attention_mask.map((r) => r.slice(0, prefill))), ...none.pastFeeds(pastKeyName, pastValueName) });
    const mask = Uint8Array.from(c.attention_mask.flatMap((r) => r.slice(0, prefill)));
    let batch = new KvBatch(B, prefill, prefill, mask, newKv(first, 'key'), newKv(first, 'value'), cfg.numKvHeads, cfg.headDim);
    batch = gatherRows([{ batch, rows: Array.from({ length: B }, (_, r) => r) }], 3, false);
    let maxErr = 0;
    const check = (logits: Float32Array, end: number) => {
      for (let b = 0; b < B; b++) {
        if (!c.attention_mask[b][end - 1]) continue;
        for (let v = 0; v < V; v++) maxErr = Math.max(maxErr, Math.abs(logits[b * V + v] - c.logits[b][end - 1][v]));
      }
    };
    check(first.logits.data as Float32Array, prefill);
    for (let end = prefill + 1; end <= T; end++) {
      const out = await runSession(session, { input_ids: i64(c.input_ids.map((r) => r.slice(end - 1, end))), position_ids: i64(pos(end - 1, end)), attention_mask: batch.maskTensor(1), ...batch.pastFeeds(pastKeyName, pastValueName) });
      assert.deepEqual(out[newKeyName(0)].shape, [B, cfg.numKvHeads, 1, cfg.headDim]);
      check(out.logits.data as Float32Array, end);
      batch.append(newKv(out, 'key'), newKv(out, 'value'));
    }
    assert.ok(batch.capacity > prefill + 3, 'the cache grew');
    assert.ok(maxErr <= 1e-4, `max |Δlogit| = ${maxErr}`);
  });
}

test('KvBatch: append writes one column per row, grows keeping content; gatherRows drops all-padding columns and leaves room', () => {
  const [layers, kvH, hd] = [2, 2, 3];
  const col = (tag: number, rows: number) => Array.from({ length: layers }, (_, l) => Float32Array.from({ length: rows * kvH * hd }, (_, i) => tag * 1000 + l * 100 + i));
  // two rows, 3 columns used of 4: row 0 has tokens in columns 1..2, row 1 only in column 2
  const mask = Uint8Array.from([0, 1, 1, 0, 0, 0, 1, 0]);
  const zeros = () => Array.from({ length: layers }, () => new Float32Array(2 * kvH * 4 * hd));
  const b = new KvBatch(2, 3, 4, mask, zeros(), zeros(), kvH, hd);
  b.append(col(1, 2), col(2, 2));
  assert.equal(b.length, 4);
  b.append(col(3, 2), col(4, 2)); // full: grows
  assert.equal(b.length, 5);
  assert.ok(b.capacity >= 5);
  const C = b.capacity;
  const at = (data: Float32Array, row: number, head: number, column: number) => Array.from(data.subarray(((row * kvH + head) * C + column) * hd, ((row * kvH + head) * C + column + 1) * hd));
  // row 1, head 1 → new-K/V block index (1*kvH+1)*hd = 9
  assert.deepEqual(at(b.keys[1], 1, 1, 3), [1109, 1110, 1111]);
  assert.deepEqual(at(b.values[0], 1, 1, 4), [4009, 4010, 4011]);
  assert.deepEqual(Array.from(b.maskTensor(1).data as BigInt64Array).map(Number), [
    ...[0, 1, 1, 1, 1], ...new Array(C - 5).fill(0), 1,
    ...[0, 0, 1, 1, 1], ...new Array(C - 5).fill(0), 1,
  ]);
  // row 1 alone: columns 0..1 are padding for it and are dropped
  const g = gatherRows([{ batch: b, rows: [1] }], 2);
  assert.equal(g.length, 3);
  assert.equal(g.capacity, 5);
  assert.deepEqual(Array.from(g.mask), [1, 1, 1, 0, 0]);
  assert.deepEqual(Array.from(g.keys[1].subarray((1 * g.capacity + 1) * hd, (1 * g.capacity + 2) * hd)), [1109, 1110, 1111]);
});
