import test from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/builder.ts';
import { GraphInfo, productDim, quotientDim } from '../../src/autodiff/graph-info.ts';
import { gradients } from '../../src/autodiff/reverse.ts';

test('dim algebra: products and exact quotients of symbolic dims', () => {
  assert.equal(productDim(['rows', 'seq', 4]), '4*rows*seq');
  assert.equal(productDim([2, 3]), 6);
  assert.equal(productDim(['seq', 'rows']), productDim(['rows', 'seq']));
  assert.equal(productDim(['rows', null]), null);
  assert.equal(quotientDim('4*rows*seq', 4), 'rows*seq');
  assert.equal(quotientDim('12*rows*seq', '3*rows'), '4*seq');
  assert.equal(quotientDim('rows*seq', 'heads'), null);
  assert.equal(quotientDim('6*seq', 4), null);
});

test('shape inference keeps symbols through flatten-Gemm-unflatten and causal-mask ranges', () => {
  const g = new GraphBuilder('t');
  const x = g.input('x', 'float32', ['rows', 'seq', 8]);
  const w = g.input('w', 'float32', [5, 8]);
  const flat = g.op1('Reshape', [x, g.int64([-1, 8])]);
  const y = g.op1('Gemm', [flat, w], { transB: 1 });
  const back = g.op1('Reshape', [y, g.op1('Concat', [g.op1('Shape', [x], { start: 0, end: 2 }), g.int64([5])], { axis: 0 })]);
  const heads = g.op1('Reshape', [back, g.int64([0, 0, 5, 1])]);
  const grouped = g.op1('Reshape', [heads, g.int64([0, -1, 1])]);
  const total = g.op1('Reshape', [g.op1('Shape', [x], { start: 1, end: 2 }), g.int64([], [0])]);
  const keys = g.op1('Range', [g.int64([0], []), total, g.int64([1], [])]);
  const queries = g.op1('Range', [g.op1('Sub', [total, total]), total, g.int64([1], [])]);
  const info = new GraphInfo(g);
  assert.deepEqual(info.shape(flat), ['rows*seq', 8]);
  assert.deepEqual(info.shape(y), ['rows*seq', 5]);
  assert.deepEqual(info.shape(back), ['rows', 'seq', 5]);
  assert.deepEqual(info.shape(grouped), ['rows', '5*seq', 1]);
  assert.deepEqual(info.shape(keys), ['seq']);
  assert.deepEqual(info.shape(queries), ['seq']);
});

test('a residual linear block on symbolic shapes differentiates without runtime broadcast search', () => {
  const g = new GraphBuilder('t');
  const x = g.input('x', 'float32', ['rows', 'seq', 8]);
  const w = g.input('w', 'float32', [8, 8]);
  const flat = g.op1('Reshape', [x, g.int64([-1, 8])]);
  const y = g.op1('Reshape', [g.op1('Gemm', [flat, w], { transB: 1 }), g.op1('Concat', [g.op1('Shape', [x], { start: 0, end: 2 }), g.int64([8])], { axis: 0 })]);
  const h = g.op1('Add', [x, g.op1('Mul', [y, g.op1('Sigmoid', [y])])]);
  const loss = g.op1('ReduceSum', [h], { keepdims: 0 });
  const before = g.nodes.length;
  gradients(g, { loss, wrt: [x, w] });
  const backward = g.nodes.slice(before).map((n) => n.opType);
  // the runtime fallback of sumToShape finds broadcast axes with NonZero and sums with ReduceSum
  assert.ok(!backward.includes('NonZero'), `backward has runtime broadcast search: ${backward.join(' ')}`);
  assert.equal(backward.filter((op) => op === 'ReduceSum').length, 0);
});
