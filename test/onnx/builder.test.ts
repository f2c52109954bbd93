import test from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, serializeModel } from '../../src/onnx/builder.ts';
import { checkProvider, createSession, runSession } from '../../src/onnx/session.ts';

test('a built graph runs on onnxruntime and matches a JS reference', async () => {
  const g = new GraphBuilder('affine_softmax');
  const x = g.input('x', 'float32', ['batch', 3]);
  const w = g.initializer('w', { dtype: 'float32', shape: [3, 2], data: Float32Array.of(1, -1, 0.5, 2, -0.25, 0) });
  const b = g.scalar(0.125);
  const logits = g.op1('Add', [g.op1('MatMul', [x, w]), b]);
  const probs = g.op1('Softmax', [logits], { axis: -1 });
  const scaled = g.op1('Mul', [probs, g.scalar(2)]);
  const leaky = g.op1('LeakyRelu', [logits], { alpha: { float: 1 } }); // integral FLOAT attribute
  g.output(scaled, 'float32', ['batch', 2], 'scaled');
  g.output(leaky, 'float32', ['batch', 2], 'leaky');
  const session = await createSession(serializeModel(g));
  const xs = Float32Array.of(1, 2, 3, -1, 0, 4);
  const out = await runSession(session, { x: { dtype: 'float32', shape: [2, 3], data: xs } });
  for (let r = 0; r < 2; r++) {
    const row = [0, 1].map((c) => xs[r * 3] * [1, -1][c] + xs[r * 3 + 1] * [0.5, 2][c] + xs[r * 3 + 2] * [-0.25, 0][c] + 0.125);
    const z = Math.exp(row[0]) + Math.exp(row[1]);
    for (let c = 0; c < 2; c++) {
      assert.ok(Math.abs((out.scaled.data[r * 2 + c] as number) - (2 * Math.exp(row[c])) / z) < 1e-6);
      assert.ok(Math.abs((out.leaky.data[r * 2 + c] as number) - row[c]) < 1e-6);
    }
  }
  assert.deepEqual(out.scaled.shape, [2, 2]);
});

test('duplicate value names are refused with the name', () => {
  const g = new GraphBuilder('dup');
  g.input('x', 'float32', [1]);
  assert.throws(() => g.input('x', 'float32', [1]), /'x' is already used/);
});

test('an unavailable execution provider gives a clear error', () => {
  assert.throws(() => checkProvider('cuda'), /cuda/);
});
