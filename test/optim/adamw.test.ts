import test from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { emitAdamW, type AdamWConfig } from '../../src/optim/adamw.ts';
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
  test(`AdamW in the graph equals torch's update over 3 steps (clip ${maxGradNorm ?? 'off'})`, async () => {
    const cfg: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm };
    const g = new GraphBuilder('adamw');
    const slots = [3, 2].map((n, k) => ({
      param: g.input(`p${k}`, 'float64', [n]),
      m: g.input(`m${k}`, 'float64', [n]),
      v: g.input(`v${k}`, 'float64', [n]),
      grad: g.input(`g${k}`, 'float64', [n]),
    }));
    const out = emitAdamW(g, slots, g.input('lr', 'float64', []), g.input('step', 'float64', []), cfg, 'float64');
    out.params.forEach((x, k) => g.output(x, 'float64', [k ? 2 : 3], `np${k}`));
    out.m.forEach((x, k) => g.output(x, 'float64', [k ? 2 : 3], `nm${k}`));
    out.v.forEach((x, k) => g.output(x, 'float64', [k ? 2 : 3], `nv${k}`));
    g.output(out.gradNorm, 'float64', [], 'norm');
    const session = await createSession(serializeModel(g));
    const p0 = [[0.5, -1, 2], [0.1, 0.3]];
    const grads = [[[0.2, -0.4, 1.5], [0.05, -0.3]], [[-0.1, 0.2, 0.3], [0.6, 0.01]], [[0.0, 1.0, -2.0], [0.4, -0.2]]];
    const lr = 0.01;
    const state: { p: Float64Array[]; m: Float64Array[]; v: Float64Array[] } = { p: p0.map((x) => Float64Array.from(x)), m: p0.map((x) => new Float64Array(x.length)), v: p0.map((x) => new Float64Array(x.length)) };
    const norms: number[] = [];
    for (const [s, gs] of grads.entries()) {
      const feeds: Record<string, { dtype: 'float64'; shape: number[]; data: Float64Array }> = {
        lr: { dtype: 'float64', shape: [], data: Float64Array.of(lr) },
        step: { dtype: 'float64', shape: [], data: Float64Array.of(s + 1) },
      };
      for (let k = 0; k < 2; k++) {
        const shape = [state.p[k].length];
        feeds[`p${k}`] = { dtype: 'float64', shape, data: state.p[k] };
        feeds[`m${k}`] = { dtype: 'float64', shape, data: state.m[k] };
        feeds[`v${k}`] = { dtype: 'float64', shape, data: state.v[k] };
        feeds[`g${k}`] = { dtype: 'float64', shape, data: Float64Array.from(gs[k]) };
      }
      const r = await runSession(session, feeds);
      for (let k = 0; k < 2; k++) {
        state.p[k] = r[`np${k}`].data as Float64Array;
        state.m[k] = r[`nm${k}`].data as Float64Array;
        state.v[k] = r[`nv${k}`].data as Float64Array;
      }
      norms.push(r.norm.data[0] as number);
    }
    const ref = reference(p0.map((x) => [...x]), grads, cfg, lr);
    ref.p.forEach((param, k) => param.forEach((x, i) => assert.ok(Math.abs(state.p[k][i] - x) < 1e-12, `p${k}[${i}] ${state.p[k][i]} vs ${x}`)));
    norms.forEach((n, s) => assert.ok(Math.abs(n - ref.norms[s]) < 1e-12));
  });
}

test('constant schedule with linear warm-up follows transformers (lr 0 on the first update)', () => {
  const s = { lr: 1e-3, warmupSteps: 50 };
  assert.equal(learningRateAt(s, 0), 0);
  assert.equal(learningRateAt(s, 25), 5e-4);
  assert.equal(learningRateAt(s, 50), 1e-3);
  assert.equal(learningRateAt(s, 500), 1e-3);
  assert.equal(learningRateAt({ lr: 2e-3, warmupSteps: 0 }, 0), 2e-3);
});
