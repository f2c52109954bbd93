import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { toFloat } from '../../src/model/llama-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { buildGradsGraph, gradName } from '../../src/engine/trainer-graph.ts';
import type { HostTensor } from '../../src/model/tensor.ts';
import { Rng } from '../../src/util/random.ts';

// Whole-model DPO loss on float64: the gradient of every parameter tensor against a central finite
// difference along a random direction in that tensor (relative error ≤ 1e-5).
const dirOf = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);

for (const [fixture, loss, linear] of [['llama-gqa-untied', 'dpo', 'gemm'], ['llama-gqa-untied', 'ipo', 'matmul'], ['qwen2-bias-tied', 'dpo', 'gemm'], ['llama3-scaled-tied', 'kto', 'gemm']] as const) {
  test(`${fixture}: whole-model ${loss} gradients (${linear} linears) match finite differences on float64`, async () => {
    const config = readHfConfig(join(dirOf(fixture), 'config.json'));
    const weights = readSafetensorsDir(dirOf(fixture)).weights;
    const g = buildGradsGraph({ config, dtype: 'float64', loss, beta: 0.5, maxPositions: 16, linear });
    const session = await createSession(serializeModel(g), { optimization: 'basic' });
    const rng = new Rng(11);
    const [N, T] = [4, 6];
    const ids = Array.from({ length: N * T }, () => BigInt(3 + Math.floor(rng.next() * 90)));
    const attention = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0];
    const response = [0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 0].slice(0, N * (T - 1));
    const feeds: Record<string, HostTensor> = {
      input_ids: { dtype: 'int64', shape: [N, T], data: BigInt64Array.from(ids) },
      attention_mask: { dtype: 'int64', shape: [N, T], data: BigInt64Array.from(attention.map(BigInt)) },
      response_mask: { dtype: 'float64', shape: [N, T - 1], data: Float64Array.from(response) },
      loss_weight: { dtype: 'float64', shape: [], data: Float64Array.of(1 / 2) },
      ref_logps: { dtype: 'float64', shape: [N], data: Float64Array.of(-14, -15.5, -13.2, -16) },
    };
    if (loss === 'kto') feeds.kto_z0 = { dtype: 'float64', shape: [], data: Float64Array.of(0.3) };
    for (const [name, t] of weights) feeds[name] = toFloat(t, 'float64');
    const out = await runSession(session, feeds);
    const lossAt = async () => (await runSession(session, feeds, ['loss'])).loss.data[0] as number;
    const h = 1e-5;
    for (const name of weights.keys()) {
      const data = feeds[name].data as Float64Array;
      const orig = Float64Array.from(data);
      const dir = Float64Array.from(data, () => rng.normal());
      const grad = out[gradName(name)].data as Float64Array;
      const analytic = grad.reduce((s, gi, i) => s + gi * dir[i], 0);
      data.forEach((_, i) => (data[i] = orig[i] + h * dir[i]));
      const plus = await lossAt();
      data.forEach((_, i) => (data[i] = orig[i] - h * dir[i]));
      const minus = await lossAt();
      data.set(orig);
      const numeric = (plus - minus) / (2 * h);
      const rel = Math.abs(analytic - numeric) / Math.max(Math.abs(numeric), 1e-9);
      assert.ok(rel <= 1e-5, `${name}: directional derivative ${analytic} vs finite difference ${numeric} (relative error ${rel.toExponential(2)})`);
      assert.ok(Math.abs(numeric) > 1e-9, `${name}: the loss does not depend on it`);
    }
  });
}
