import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensors, readSafetensorsDir } from '../../src/model/safetensors.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { buildGradsGraph, gradName } from '../../src/engine/trainer-graph.ts';
import { collateRows, preferenceRows, type PreferencePair } from '../../src/engine/trainer-batch.ts';
import { TrainerCore } from '../../src/engine/trainer-core.ts';
import type { HostTensor, Weights } from '../../src/model/tensor.ts';

// Reference: test/fixtures/train/<model>/, made by tools/train_fixtures.py with PyTorch autograd and
// torch.optim.AdamW (after clip_grad_norm_(1.0)).
interface Expected {
  beta: number;
  lr: number;
  weight_decay: number;
  max_grad_norm: number;
  input_ids: number[][];
  response_mask: number[][];
  ref_logps: number[];
  policy_logps: number[];
  loss: number;
  grad_norm: number;
  chosen_rewards: number[];
  rejected_rewards: number[];
  parameter_names: string[];
}

function load(name: string) {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'train', name);
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
  const config = readHfConfig(join(dir, 'model', 'config.json'));
  const weights = readSafetensorsDir(join(dir, 'model')).weights;
  if (config.tieWordEmbeddings) weights.delete('lm_head.weight'); // a tied checkpoint may carry it; the embedding is the parameter
  const grads = readSafetensors(join(dir, 'grads.safetensors')).weights;
  const after = readSafetensors(join(dir, 'after.safetensors')).weights;
  // Rows: chosen then rejected; the response is where response_mask marks the predicted tokens.
  const P = expected.input_ids.length / 2;
  const split = (i: number) => {
    const first = expected.response_mask[i].indexOf(1);
    const count = expected.response_mask[i].reduce((a, b) => a + b, 0);
    return { prompt: expected.input_ids[i].slice(0, first + 1), response: expected.input_ids[i].slice(first + 1, first + 1 + count) };
  };
  const pairs: PreferencePair[] = Array.from({ length: P }, (_, i) => ({
    promptTokenIds: split(i).prompt,
    chosenTokenIds: split(i).response,
    rejectedTokenIds: split(P + i).response,
    refChosenLogp: expected.ref_logps[i],
    refRejectedLogp: expected.ref_logps[P + i],
  }));
  return { expected, config, weights, grads, after, pairs };
}

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < expected.length; i++) {
    d += (actual[i] - expected[i]) ** 2;
    r += expected[i] ** 2;
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(r), 1e-30);
}

const asNumbers = (t: HostTensor) => t.data as Float32Array;

for (const name of ['tiny-llama', 'tiny-qwen2']) {
  test(`${name}: DPO loss, sequence log-probs and every parameter gradient match PyTorch (≤ 1e-4)`, async () => {
    const { expected, config, weights, grads, pairs } = load(name);
    const g = buildGradsGraph({ config, dtype: 'float32', loss: 'dpo', beta: expected.beta });
    const session = await createSession(serializeModel(g));
    const c = collateRows(preferenceRows(pairs), 'float32');
    assert.deepEqual(Array.from(c.input_ids.data as BigInt64Array, Number), expected.input_ids.flat(), 'collation reproduces the fixture batch');
    const out = await runSession(session, {
      ...Object.fromEntries(weights),
      input_ids: c.input_ids,
      attention_mask: c.attention_mask,
      response_mask: c.response_mask,
      loss_weight: { dtype: 'float32', shape: [], data: Float32Array.of(1 / pairs.length) },
      ref_logps: { dtype: 'float32', shape: [2 * pairs.length], data: Float32Array.from(expected.ref_logps) },
    });
    assert.ok(Math.abs((out.loss.data[0] as number) - expected.loss) / expected.loss <= 1e-4, `loss ${out.loss.data[0]} vs ${expected.loss}`);
    assert.ok(relError(asNumbers(out.policy_logps), expected.policy_logps) <= 1e-4);
    assert.equal(grads.size, expected.parameter_names.length);
    for (const [param, ref] of grads) {
      const ours = out[gradName(param)];
      assert.ok(ours, `no gradient output for ${param}`);
      const rel = relError(asNumbers(ours), asNumbers(ref));
      assert.ok(rel <= 1e-4, `${param}: gradient relative error ${rel.toExponential(2)}`);
    }
  });

  for (const microBatch of [undefined, 1]) {
    test(`${name}: one AdamW step (clip 1.0, weight decay) matches torch.optim.AdamW${microBatch ? ', accumulated over 3 micro-batches' : ''}`, async () => {
      const { expected, config, weights, after, pairs } = load(name);
      const trainer = new TrainerCore(config, weights, {
        loss: 'dpo',
        beta: expected.beta,
        lr: expected.lr,
        warmupSteps: 0,
        adamw: { weightDecay: expected.weight_decay, maxGradNorm: expected.max_grad_norm },
        microBatch,
      });
      const metrics = await trainer.step({ kind: 'preference', pairs });
      assert.ok(Math.abs(metrics.loss - expected.loss) / expected.loss <= 1e-4, `loss ${metrics.loss} vs ${expected.loss}`);
      assert.ok(Math.abs(metrics.gradNorm - expected.grad_norm) / expected.grad_norm <= 1e-4, `grad norm ${metrics.gradNorm} vs ${expected.grad_norm}`);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      assert.ok(Math.abs(metrics.chosenReward - mean(expected.chosen_rewards)) <= 1e-4);
      assert.ok(Math.abs(metrics.rejectedReward - mean(expected.rejected_rewards)) <= 1e-4);
      const now: Weights = trainer.weights();
      for (const [param, ref] of after) {
        const before = asNumbers(weights.get(param)!);
        const ours = asNumbers(now.get(param)!);
        const deltaOurs = ours.map((x, i) => x - before[i]);
        const deltaRef = asNumbers(ref).map((x, i) => x - before[i]);
        const rel = relError(deltaOurs, deltaRef);
        assert.ok(rel <= 1e-4, `${param}: update relative error ${rel.toExponential(2)}`);
      }
      await trainer.release();
    });
  }
}
