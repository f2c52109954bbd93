import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { toFloat } from '../../src/model/llama-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { buildGradsGraph, gradName, METRIC_OUTPUTS } from '../../src/engine/trainer-graph.ts';
import { collateRows, packPreferencePairs, preferenceRows, type PreferencePair } from '../../src/engine/trainer-batch.ts';
import type { HostTensor } from '../../src/model/tensor.ts';
import { Rng } from '../../src/util/random.ts';
import { TrainerCore } from '../../src/engine/trainer-core.ts';

// The shared-prompt packing (one row per pair: prompt ++ chosen ++ rejected) against the two-row
// layout on float64: the same loss, metrics, sequence log-probs and every gradient (relative 1e-10).
// The two-row layout is the one the finite-difference and PyTorch checks cover.
const dirOf = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);

function randomPairs(rng: Rng, count: number, vocab: number): PreferencePair[] {
  const ids = (n: number) => Array.from({ length: n }, () => 3 + rng.int(vocab - 3));
  return Array.from({ length: count }, (_, i) => ({
    promptTokenIds: ids(1 + ((i * 3) % 5)), // ragged: 1–5 prompt tokens, a one-token prompt included
    chosenTokenIds: ids(1 + ((i * 2) % 4)),
    rejectedTokenIds: ids(4 - (i % 4)),
    refChosenLogp: -10 - rng.next() * 5,
    refRejectedLogp: -10 - rng.next() * 5,
  }));
}

for (const [fixture, loss] of [['llama-gqa-untied', 'dpo'], ['qwen2-bias-tied', 'rdpo'], ['llama3-scaled-tied', 'kto']] as const) {
  test(`${fixture}: ${loss} with the prompt shared equals the two-row layout (loss, metrics, log-probs, every gradient)`, async () => {
    const config = readHfConfig(join(dirOf(fixture), 'config.json'));
    const weights = readSafetensorsDir(dirOf(fixture)).weights;
    const pairs = randomPairs(new Rng(17), 5, config.vocabSize);
    const common: Record<string, HostTensor> = {
      loss_weight: { dtype: 'float64', shape: [], data: Float64Array.of(1 / pairs.length) },
      ref_logps: { dtype: 'float64', shape: [2 * pairs.length], data: Float64Array.from([...pairs.map((p) => p.refChosenLogp), ...pairs.map((p) => p.refRejectedLogp)]) },
    };
    if (loss === 'rdpo') common.lengths = { dtype: 'float64', shape: [2 * pairs.length], data: Float64Array.from([...pairs.map((p) => p.chosenTokenIds.length), ...pairs.map((p) => p.rejectedTokenIds.length)]) };
    if (loss === 'kto') common.kto_z0 = { dtype: 'float64', shape: [], data: Float64Array.of(0.2) };
    for (const [name, t] of weights) common[name] = toFloat(t, 'float64');

    const run = async (sharedPrompt: boolean, batch: Record<string, HostTensor>) => {
      const g = buildGradsGraph({ config, dtype: 'float64', loss, beta: 0.5, alpha: 0.1, maxPositions: 32, sharedPrompt });
      const session = await createSession(serializeModel(g), { optimization: 'basic' });
      return runSession(session, { ...common, ...batch });
    };
    const rows = collateRows(preferenceRows(pairs), 'float64');
    const twoRow = await run(false, { input_ids: rows.input_ids, attention_mask: rows.attention_mask, response_mask: rows.response_mask });
    const p = packPreferencePairs(pairs);
    assert.equal(p.input_ids.shape[0], pairs.length);
    assert.equal(p.responseTokens, rows.responseTokens);
    const shared = await run(true, {
      input_ids: p.input_ids, position_ids: p.position_ids, segment_ids: p.segment_ids,
      predict_from: p.predict_from, predict_target: p.predict_target, predict_row: p.predict_row,
    });
    const close = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => {
      let scale = 0;
      let diff = 0;
      for (let i = 0; i < a.length; i++) {
        scale = Math.max(scale, Math.abs(a[i]));
        diff = Math.max(diff, Math.abs(a[i] - b[i]));
      }
      assert.equal(a.length, b.length, what);
      assert.ok(diff <= 1e-10 * Math.max(scale, 1e-3), `${what}: max difference ${diff.toExponential(2)} at scale ${scale.toExponential(2)}`);
    };
    for (const m of METRIC_OUTPUTS) close(twoRow[m].data as Float64Array, shared[m].data as Float64Array, m);
    let nonZero = 0;
    for (const name of weights.keys()) {
      const want = twoRow[gradName(name)].data as Float64Array;
      close(want, shared[gradName(name)].data as Float64Array, gradName(name));
      if (want.some((x) => x !== 0)) nonZero++;
    }
    assert.ok(nonZero >= weights.size - 1, `${nonZero} of ${weights.size} gradients are non-zero`);
  });
}

test('packPreferencePairs: positions restart after the prompt for the rejected response, each response predicted from its own past', () => {
  const p = packPreferencePairs([{ promptTokenIds: [5, 6], chosenTokenIds: [7, 8, 9], rejectedTokenIds: [10, 11], refChosenLogp: 0, refRejectedLogp: 0 }, { promptTokenIds: [5], chosenTokenIds: [12], rejectedTokenIds: [13], refChosenLogp: 0, refRejectedLogp: 0 }], 0);
  const n = (t: HostTensor) => Array.from(t.data as BigInt64Array, Number);
  assert.deepEqual(p.input_ids.shape, [2, 7]);
  assert.deepEqual(n(p.input_ids), [5, 6, 7, 8, 9, 10, 11, 5, 12, 13, 0, 0, 0, 0]);
  assert.deepEqual(n(p.position_ids), [0, 1, 2, 3, 4, 2, 3, 0, 1, 1, 0, 0, 0, 0]);
  assert.deepEqual(n(p.segment_ids), [1, 1, 2, 2, 2, 3, 3, 1, 2, 3, 0, 0, 0, 0]);
  // chosen 7,8,9 from positions 1,2,3; rejected 10 from the prompt's last (1), 11 from 10 (5); row 1 from 7
  assert.deepEqual(n(p.predict_from), [1, 2, 3, 1, 5, 7, 7]);
  assert.deepEqual(n(p.predict_target), [7, 8, 9, 10, 11, 12, 13]);
  assert.deepEqual(n(p.predict_row), [0, 0, 0, 2, 2, 1, 3]);
  assert.throws(() => packPreferencePairs([{ promptTokenIds: [], chosenTokenIds: [1], rejectedTokenIds: [2], refChosenLogp: 0, refRejectedLogp: 0 }]), /pair 0 has an empty prompt/);
});

test('TrainerCore on float32 with maxPositions the longest sequence: the shared-prompt step equals the two-row step', async () => {
  // the packed rows are longer than maxPositions (their position ids are not): onnxruntime's fused
  // RotaryEmbedding must still get a table row per position of the row
  const dir = dirOf('llama-gqa-untied');
  const config = readHfConfig(join(dir, 'config.json'));
  const pairs = randomPairs(new Rng(3), 4, config.vocabSize);
  const longest = Math.max(...pairs.flatMap((p) => [p.chosenTokenIds.length, p.rejectedTokenIds.length].map((n) => n + p.promptTokenIds.length)));
  const step = async (sharedPrompt: boolean) => {
    const trainer = new TrainerCore(config, readSafetensorsDir(dir).weights, { loss: 'dpo', beta: 0.5, lr: 1e-3, warmupSteps: 0, maxPositions: longest, sharedPrompt });
    const metrics = await trainer.step({ kind: 'preference', pairs });
    const logps = await trainer.policyLogps(preferenceRows(pairs));
    await trainer.release();
    return { metrics, logps };
  };
  const twoRow = await step(false);
  const shared = await step(true);
  for (const k of ['loss', 'margin', 'chosenReward', 'rejectedReward', 'gradNorm'] as const) {
    assert.ok(Math.abs(shared.metrics[k] - twoRow.metrics[k]) <= 1e-5 * Math.max(1, Math.abs(twoRow.metrics[k])), `${k}: ${shared.metrics[k]} vs ${twoRow.metrics[k]}`);
  }
  assert.equal(shared.metrics.tokens, twoRow.metrics.tokens);
  // after the step: the same policy (log-probs of the two-row layout, within float32 rounding of an AdamW step)
  shared.logps.forEach((x, i) => assert.ok(Math.abs(x - twoRow.logps[i]) <= 1e-4 * Math.max(1, Math.abs(twoRow.logps[i])), `row ${i}: ${x} vs ${twoRow.logps[i]}`));
});
