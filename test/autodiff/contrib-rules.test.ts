import test from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, MS_DOMAIN, serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { gradients } from '../../src/autodiff/reverse.ts';
import { ropeTables } from '../../src/model/rope.ts';
import type { HostTensor } from '../../src/model/tensor.ts';
import { Rng } from '../../src/util/random.ts';

// The com.microsoft kernels the trainer uses in float32 (onnxruntime has no float64 kernel for them,
// so the float64 finite-difference check of vjp-rules.test.ts cannot run them): their values and VJPs
// against the same function in standard ops, whose rules that check covers (float32, ≤ 1e-5).
function relError(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < a.length; i++) {
    d += (a[i] - b[i]) ** 2;
    r += b[i] ** 2;
  }
  assert.ok(r > 0, 'reference is identically zero; the case tests nothing');
  return Math.sqrt(d) / Math.sqrt(r);
}

async function valueAndGrad(shape: number[], build: (g: GraphBuilder, x: string) => string, feeds: Record<string, HostTensor>) {
  const g = new GraphBuilder('t');
  const x = g.input('x', 'float32', shape);
  const y = build(g, x);
  const w = g.input('w', 'float32', shape);
  g.output(y, 'float32', shape, 'y');
  const { grads } = gradients(g, { seeds: new Map([[y, w]]), wrt: [x] });
  g.output(grads.get(x)!, 'float32', shape, 'dx');
  const out = await runSession(await createSession(serializeModel(g)), feeds);
  return { y: out.y.data as Float32Array, dx: out.dx.data as Float32Array };
}

function randomFeeds(shape: number[], extra: Record<string, HostTensor> = {}): Record<string, HostTensor> {
  const rng = new Rng(3);
  const n = shape.reduce((a, b) => a * b, 1);
  const r = () => ({ dtype: 'float32' as const, shape, data: Float32Array.from({ length: n }, () => 2 * rng.normal()) });
  return { x: r(), w: r(), ...extra };
}

test('QuickGelu (α = 1, SiLU) value and VJP equal x·sigmoid(x) in standard ops', async () => {
  const shape = [3, 7];
  const feeds = randomFeeds(shape);
  const fused = await valueAndGrad(shape, (g, x) => g.op1('QuickGelu', [x], { alpha: { float: 1 } }, MS_DOMAIN), feeds);
  const plain = await valueAndGrad(shape, (g, x) => g.op1('Mul', [x, g.op1('Sigmoid', [x])]), feeds);
  assert.ok(relError(fused.y, plain.y) <= 1e-6);
  assert.ok(relError(fused.dx, plain.dx) <= 1e-5, `dx ${relError(fused.dx, plain.dx)}`);
});

test('QuickGelu (α = 1.702) VJP equals x·sigmoid(1.702x) in standard ops', async () => {
  const shape = [11];
  const feeds = randomFeeds(shape);
  const fused = await valueAndGrad(shape, (g, x) => g.op1('QuickGelu', [x], { alpha: 1.702 }, MS_DOMAIN), feeds);
  const plain = await valueAndGrad(shape, (g, x) => g.op1('Mul', [x, g.op1('Sigmoid', [g.op1('Mul', [x, g.scalar(1.702, 'float32')])])]), feeds);
  assert.ok(relError(fused.dx, plain.dx) <= 1e-5, `dx ${relError(fused.dx, plain.dx)}`);
});

test('RotaryEmbedding (rotate-half) value and VJP equal the rotate_half RoPE in standard ops', async () => {
  const [B, H, S, hd] = [2, 3, 5, 8];
  const shape = [B, H, S, hd];
  const tables = ropeTables({ headDim: hd, ropeTheta: 10000, ropeScaling: null }, 16, 'float32');
  const positions: HostTensor = { dtype: 'int64', shape: [B, S], data: BigInt64Array.from({ length: B * S }, (_, i) => BigInt((i * 3) % 13)) };
  const feeds = randomFeeds(shape, { positions });
  const withTables = (g: GraphBuilder) => {
    const pos = g.input('positions', 'int64', [B, S]);
    return { pos, cos: g.constant(tables.cos, 'cos'), sin: g.constant(tables.sin, 'sin') };
  };
  const fused = await valueAndGrad(shape, (g, x) => {
    const t = withTables(g);
    return g.op1('RotaryEmbedding', [x, t.pos, t.cos, t.sin], { interleaved: 0 }, MS_DOMAIN);
  }, feeds);
  const plain = await valueAndGrad(shape, (g, x) => {
    const t = withTables(g);
    const rows = (table: string) => g.op1('Unsqueeze', [g.op1('Gather', [table, t.pos], { axis: 0 }), g.int64([1])]);
    const [cos, sin] = [rows(t.cos), rows(t.sin)];
    const x1 = g.op1('Slice', [x, g.int64([0]), g.int64([hd / 2]), g.int64([3])]);
    const x2 = g.op1('Slice', [x, g.int64([hd / 2]), g.int64([hd]), g.int64([3])]);
    const r1 = g.op1('Sub', [g.op1('Mul', [x1, cos]), g.op1('Mul', [x2, sin])]);
    const r2 = g.op1('Add', [g.op1('Mul', [x2, cos]), g.op1('Mul', [x1, sin])]);
    return g.op1('Concat', [r1, r2], { axis: 3 });
  }, feeds);
  assert.ok(relError(fused.y, plain.y) <= 1e-6);
  assert.ok(relError(fused.dx, plain.dx) <= 1e-5, `dx ${relError(fused.dx, plain.dx)}`);
});

test('SimplifiedLayerNormalization (RMSNorm) value and VJP (x and the weight) equal RMSNorm in standard ops', async () => {
  const shape = [2, 3, 8];
  const rng = new Rng(5);
  const w: HostTensor = { dtype: 'float32', shape: [8], data: Float32Array.from({ length: 8 }, () => 1 + 0.3 * rng.normal()) };
  const feeds = randomFeeds(shape, { scale: w });
  const run = async (norm: (g: GraphBuilder, x: string, scale: string) => string) => {
    const g = new GraphBuilder('t');
    const x = g.input('x', 'float32', shape);
    const scale = g.input('scale', 'float32', [8]);
    const y = norm(g, x, scale);
    const cot = g.input('w', 'float32', shape);
    g.output(y, 'float32', shape, 'y');
    const { grads } = gradients(g, { seeds: new Map([[y, cot]]), wrt: [x, scale] });
    g.output(grads.get(x)!, 'float32', shape, 'dx');
    g.output(grads.get(scale)!, 'float32', [8], 'dscale');
    const out = await runSession(await createSession(serializeModel(g)), feeds);
    return { y: out.y.data as Float32Array, dx: out.dx.data as Float32Array, dscale: out.dscale.data as Float32Array };
  };
  const eps = 1e-5;
  const fused = await run((g, x, scale) => g.op('SimplifiedLayerNormalization', [x, scale], { axis: -1, epsilon: { float: eps } }, { outputs: 2 })[0]);
  const plain = await run((g, x, scale) => {
    const meanSq = g.op1('ReduceMean', [g.op1('Mul', [x, x]), g.int64([-1])], { keepdims: 1 });
    const inv = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [meanSq, g.scalar(eps, 'float32')])])]);
    return g.op1('Mul', [g.op1('Mul', [x, inv]), scale]);
  });
  assert.ok(relError(fused.y, plain.y) <= 1e-6);
  assert.ok(relError(fused.dx, plain.dx) <= 1e-5, `dx ${relError(fused.dx, plain.dx)}`);
  assert.ok(relError(fused.dscale, plain.dscale) <= 1e-5, `dscale ${relError(fused.dscale, plain.dscale)}`);
});
