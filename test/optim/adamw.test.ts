import test from 'node:test';
import assert from 'node:assert/strict';
import { adamwUpdate, type AdamWConfig } from '../../src/optim/adamw.ts';
import { learningRateAt } from '../../src/optim/schedule.ts';

// AdamW against a plain-JS transcription of torch.optim.AdamW's update (and clip_grad_norm_), over
// three steps so that m, v and bias correction are all exercised.
function reference(p: number[][], g: number[][][], cfg: AdamWConfig, lr: number) {
  const m = p.map((x) => x.map(() => 0));
  const v = p.map((x) => x.map(() => 0));
  const norms: number[] = [];
  g.forEach((grads, s) => {
    const t = s + 1;
    const norm = Math.sqrt(grads.flat().reduce((a, x) => a + x * x, 0));
    norms.push(norm);
    const clip = cfg.maxGradNorm === null ? 1 : Math.min(1, cfg.maxGradNorm / (norm + 1e-6));
    p.forEach((param, k) =>
      param.forEach((_, i) => {
        const gi = grads[k][i] * clip;
        param[i] *= 1 - lr * cfg.weightDecay;
        m[k][i] = cfg.beta1 * m[k][i] + (1 - cfg.beta1) * gi;
        v[k][i] = cfg.beta2 * v[k][i] + (1 - cfg.beta2) * gi * gi;
        const denom = Math.sqrt(v[k][i]) / Math.sqrt(1 - cfg.beta2 ** t) + cfg.eps;
        param[i] -= (lr / (1 - cfg.beta1 ** t)) * (m[k][i] / denom);
      }),
    );
  });
  return { p, norms };
}

for (const maxGradNorm of [null, 0.5]) {
  test(`host AdamW over a flat buffer equals torch's update over 3 steps (clip ${maxGradNorm ?? 'off'})`, () => {
    const cfg: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm };
    const p0 = [[0.5, -1, 2], [0.1, 0.3]];
    const grads = [[[0.2, -0.4, 1.5], [0.05, -0.3]], [[-0.1, 0.2, 0.3], [0.6, 0.01]], [[0.0, 1.0, -2.0], [0.4, -0.2]]];
    const lr = 0.01;
    const state = { param: Float64Array.from(p0.flat()), m: new Float64Array(5), v: new Float64Array(5) };
    const norms = grads.map((gs, s) => adamwUpdate({ ...state, grad: Float64Array.from(gs.flat()) }, lr, s + 1, cfg));
    const ref = reference(p0.map((x) => [...x]), grads, cfg, lr);
    ref.p.flat().forEach((x, i) => assert.ok(Math.abs(state.param[i] - x) < 1e-12, `param[${i}] ${state.param[i]} vs ${x}`));
    norms.forEach((n, s) => assert.ok(Math.abs(n - ref.norms[s]) < 1e-12));
  });
}

test('host AdamW in float32 buffers stays within float32 rounding of the float64 update', () => {
  const cfg: AdamWConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };
  const n = 1000;
  const p = Float64Array.from({ length: n }, (_, i) => Math.sin(i));
  const g = Float64Array.from({ length: n }, (_, i) => Math.cos(3 * i) * 0.01);
  const f64 = { param: p.slice(), m: new Float64Array(n), v: new Float64Array(n), grad: g };
  const f32 = { param: Float32Array.from(p), m: new Float32Array(n), v: new Float32Array(n), grad: Float32Array.from(g) };
  for (let s = 1; s <= 3; s++) {
    adamwUpdate(f64, 1e-3, s, cfg);
    adamwUpdate(f32, 1e-3, s, cfg);
  }
  for (let i = 0; i < n; i++) assert.ok(Math.abs(f32.param[i] - f64.param[i]) < 1e-6, `param[${i}] ${f32.param[i]} vs ${f64.param[i]}`);
  assert.throws(() => adamwUpdate({ ...f32, grad: new Float32Array(3) }, 1e-3, 1, cfg), /buffers of 1000, 1000, 1000, 3 elements/);
});

test('constant schedule with linear warm-up follows transformers (lr 0 on the first update)', () => {
  const s = { lr: 1e-3, warmupSteps: 50 };
  assert.equal(learningRateAt(s, 0), 0);
  assert.equal(learningRateAt(s, 25), 5e-4);
  assert.equal(learningRateAt(s, 50), 1e-3);
  assert.equal(learningRateAt(s, 500), 1e-3);
  assert.equal(learningRateAt({ lr: 2e-3, warmupSteps: 0 }, 0), 2e-3);
});
