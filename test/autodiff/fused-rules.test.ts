import test from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/builder.ts';
import { gradients } from '../../src/autodiff/reverse.ts';

// What the fused rules save (their values are checked against finite differences in vjp-rules.test.ts).
function backwardOps(build: (g: GraphBuilder) => { loss: string; wrt: string[] }): string[] {
  const g = new GraphBuilder('t');
  const { loss, wrt } = build(g);
  const before = g.nodes.length;
  gradients(g, { loss, wrt });
  return g.nodes.slice(before).map((n) => n.opType);
}

test('label log-probs backward: one scatter into −softmax·Σdy, no zero-filled or subtracted vocabulary-sized tensors', () => {
  const ops = backwardOps((g) => {
    const z = g.input('z', 'float32', ['rows', 1, 50]);
    const labels = g.input('labels', 'int64', ['rows', 1, 1]);
    const picked = g.op1('GatherElements', [g.op1('LogSoftmax', [z], { axis: -1 }), labels], { axis: -1 });
    return { loss: g.op1('ReduceSum', [picked], { keepdims: 0 }), wrt: [z] };
  });
  assert.equal(ops.filter((o) => o === 'ScatterElements').length, 1);
  assert.equal(ops.filter((o) => o === 'Exp').length, 1);
  assert.ok(!ops.includes('Sub'), ops.join(' '));
  // one ConstantOfShape seeds the loss; none zero-fills the logits' gradient
  assert.equal(ops.filter((o) => o === 'ConstantOfShape').length, 1, ops.join(' '));
});

test('a tied embedding scatters its lookup gradient into the lm_head gradient (no zeros, no Sum)', () => {
  const ops = backwardOps((g) => {
    const emb = g.input('emb', 'float32', [50, 4]);
    const ids = g.input('ids', 'int64', [2, 3]);
    const h = g.op1('Gather', [emb, ids], { axis: 0 });
    const logits = g.op1('Gemm', [g.op1('Reshape', [h, g.int64([-1, 4])]), emb], { transB: 1 });
    return { loss: g.op1('ReduceSum', [logits], { keepdims: 0 }), wrt: [emb] };
  });
  assert.equal(ops.filter((o) => o === 'ScatterND').length, 1);
  assert.ok(!ops.includes('Sum'), ops.join(' '));
  assert.equal(ops.filter((o) => o === 'ConstantOfShape').length, 1, ops.join(' '));
});
