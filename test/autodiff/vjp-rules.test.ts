import test from 'node:test';
import { fdCheck, type FdCase } from './fd-check.ts';
import type { GraphBuilder } from '../../src/onnx/builder.ts';

// Every VJP rule against central finite differences on float64 graphs (relative error ≤ 1e-5).
const positive = (n: number, seed = 1) => Array.from({ length: n }, (_, i) => 0.5 + ((i * 37 + seed * 11) % 17) / 10);
const away = (n: number) => Array.from({ length: n }, (_, i) => (i % 2 ? 1 : -1) * (0.3 + ((i * 13) % 7) / 5));

const cases: Record<string, FdCase> = {
  'Add (broadcast over leading and inner axes)': {
    inputs: { a: { shape: [2, 1, 4] }, b: { shape: [3, 1] } },
    build: (g, x) => g.op1('Add', [x.a, x.b]),
  },
  'Add (runtime broadcast axes, symbolic shapes)': {
    inputs: { a: { shape: [2, 3, 4] }, b: { shape: [1, 4] } },
    symbolic: true,
    build: (g, x) => g.op1('Add', [x.a, x.b]),
  },
  'Sub (broadcast)': { inputs: { a: { shape: [3, 4] }, b: { shape: [4] } }, build: (g, x) => g.op1('Sub', [x.a, x.b]) },
  'Mul (broadcast, and a value used twice)': {
    inputs: { a: { shape: [2, 3] }, b: { shape: [2, 1] } },
    build: (g, x) => g.op1('Mul', [g.op1('Mul', [x.a, x.b]), x.a]),
  },
  'Div (broadcast)': {
    inputs: { a: { shape: [2, 3] }, b: { shape: [3], data: positive(3) } },
    build: (g, x) => g.op1('Div', [x.a, x.b]),
  },
  'Sum (three inputs, broadcast)': {
    inputs: { a: { shape: [2, 3] }, b: { shape: [3] }, c: { shape: [2, 1] } },
    build: (g, x) => g.op1('Sum', [x.a, x.b, x.c]),
  },
  Neg: { inputs: { a: { shape: [5] } }, build: (g, x) => g.op1('Neg', [x.a]) },
  Identity: { inputs: { a: { shape: [2, 2] } }, build: (g, x) => g.op1('Identity', [x.a]) },
  'Cast (float64 → float64 passthrough)': { inputs: { a: { shape: [4] } }, build: (g, x) => g.op1('Cast', [x.a], { to: 11 }) },
  'Pow (x^2)': { inputs: { a: { shape: [6] } }, build: (g, x) => g.op1('Pow', [x.a, g.scalar(2, 'float64')]) },
  'Pow (x^1.5)': { inputs: { a: { shape: [6], data: positive(6) } }, build: (g, x) => g.op1('Pow', [x.a, g.scalar(1.5, 'float64')]) },
  Sqrt: { inputs: { a: { shape: [6], data: positive(6) } }, build: (g, x) => g.op1('Sqrt', [x.a]) },
  Reciprocal: { inputs: { a: { shape: [6], data: positive(6) } }, build: (g, x) => g.op1('Reciprocal', [x.a]) },
  Exp: { inputs: { a: { shape: [6] } }, build: (g, x) => g.op1('Exp', [x.a]) },
  Log: { inputs: { a: { shape: [6], data: positive(6) } }, build: (g, x) => g.op1('Log', [x.a]) },
  Sigmoid: { inputs: { a: { shape: [6] } }, build: (g, x) => g.op1('Sigmoid', [x.a]) },
  Tanh: { inputs: { a: { shape: [6] } }, build: (g, x) => g.op1('Tanh', [x.a]) },
  Softplus: { inputs: { a: { shape: [6] } }, build: (g, x) => g.op1('Softplus', [x.a]) },
  Relu: { inputs: { a: { shape: [6], data: away(6) } }, build: (g, x) => g.op1('Relu', [x.a]) },
  'Softmax (last axis)': { inputs: { a: { shape: [2, 5] } }, build: (g, x) => g.op1('Softmax', [x.a], { axis: -1 }) },
  'Softmax (middle axis)': { inputs: { a: { shape: [2, 3, 2] } }, build: (g, x) => g.op1('Softmax', [x.a], { axis: 1 }) },
  LogSoftmax: { inputs: { a: { shape: [3, 5] } }, build: (g, x) => g.op1('LogSoftmax', [x.a], { axis: -1 }) },
  'ReduceSum (keepdims=0)': {
    inputs: { a: { shape: [2, 3, 4] } },
    build: (g, x) => g.op1('ReduceSum', [x.a, g.int64([0, -1])], { keepdims: 0 }),
  },
  'ReduceSum (all axes)': { inputs: { a: { shape: [2, 3] } }, build: (g, x) => g.op1('ReduceSum', [x.a], { keepdims: 0 }) },
  'ReduceMean (keepdims=1)': {
    inputs: { a: { shape: [2, 3, 4] } },
    build: (g, x) => g.op1('ReduceMean', [x.a, g.int64([-1])], { keepdims: 1 }),
  },
  'ReduceMean (symbolic shapes)': {
    inputs: { a: { shape: [2, 3, 4] } },
    symbolic: true,
    build: (g, x) => g.op1('ReduceMean', [x.a, g.int64([1])], { keepdims: 0 }),
  },
  ReduceLogSumExp: {
    inputs: { a: { shape: [3, 4] } },
    build: (g, x) => g.op1('ReduceLogSumExp', [x.a, g.int64([1])], { keepdims: 0 }),
  },
  'MatMul (batched)': { inputs: { a: { shape: [2, 3, 4] }, b: { shape: [2, 4, 5] } }, build: (g, x) => g.op1('MatMul', [x.a, x.b]) },
  'MatMul (shared 2-D weight, Gemm path)': {
    inputs: { a: { shape: [2, 3, 4] }, b: { shape: [4, 5] } },
    build: (g, x) => g.op1('MatMul', [x.a, x.b]),
  },
  'MatMul (broadcast batch dims)': {
    inputs: { a: { shape: [2, 1, 3, 4] }, b: { shape: [3, 4, 2] } },
    build: (g, x) => g.op1('MatMul', [x.a, x.b]),
  },
  'MatMul (symbolic shapes)': {
    inputs: { a: { shape: [2, 3, 4] }, b: { shape: [4, 5] } },
    symbolic: true,
    build: (g, x) => g.op1('MatMul', [x.a, x.b]),
  },
  'Gemm (transA, transB, C)': {
    inputs: { a: { shape: [4, 3] }, b: { shape: [5, 4] }, c: { shape: [5] } },
    build: (g, x) => g.op1('Gemm', [x.a, x.b, x.c], { transA: 1, transB: 1, alpha: 0.5, beta: { float: 2 } }),
  },
  'Gemm (plain)': {
    inputs: { a: { shape: [3, 4] }, b: { shape: [4, 5] } },
    build: (g, x) => g.op1('Gemm', [x.a, x.b]),
  },
  'Gather (embedding with repeated ids)': {
    inputs: { emb: { shape: [5, 3] }, ids: { shape: [2, 4], dtype: 'int64', data: [0, 3, 3, 1, 4, 0, 3, 2] } },
    build: (g, x) => g.op1('Gather', [x.emb, x.ids], { axis: 0 }),
  },
  'GatherElements (label log-probs)': {
    inputs: { lp: { shape: [2, 3, 5] }, labels: { shape: [2, 3, 1], dtype: 'int64', data: [4, 0, 2, 2, 2, 1] } },
    build: (g, x) => g.op1('GatherElements', [x.lp, x.labels], { axis: 2 }),
  },
  'Where (mask, broadcast)': {
    inputs: { m: { shape: [2, 3], dtype: 'bool', data: [1, 0, 1, 0, 0, 1] }, a: { shape: [2, 3] }, b: { shape: [3] } },
    build: (g, x) => g.op1('Where', [x.m, x.a, x.b]),
  },
  Reshape: { inputs: { a: { shape: [2, 6] } }, build: (g, x) => g.op1('Reshape', [x.a, g.int64([3, -1, 2])]) },
  Flatten: { inputs: { a: { shape: [2, 3, 2] } }, build: (g, x) => g.op1('Flatten', [x.a], { axis: 1 }) },
  Transpose: { inputs: { a: { shape: [2, 3, 4] } }, build: (g, x) => g.op1('Transpose', [x.a], { perm: [1, 2, 0] }) },
  Unsqueeze: { inputs: { a: { shape: [2, 3] } }, build: (g, x) => g.op1('Unsqueeze', [x.a, g.int64([1])]) },
  Squeeze: { inputs: { a: { shape: [2, 1, 3] } }, build: (g, x) => g.op1('Squeeze', [x.a, g.int64([1])]) },
  Expand: { inputs: { a: { shape: [3, 1] } }, build: (g, x) => g.op1('Expand', [x.a, g.int64([2, 3, 4])]) },
  'Slice (static, negative start)': {
    inputs: { a: { shape: [3, 6] } },
    build: (g, x) => g.op1('Slice', [x.a, g.int64([-4]), g.int64([1000]), g.int64([1])]),
  },
  'Slice (symbolic shapes, runtime pads)': {
    inputs: { a: { shape: [3, 6] } },
    symbolic: true,
    build: (g, x) => g.op1('Slice', [x.a, g.int64([1, 0]), g.int64([3, -2]), g.int64([0, 1])]),
  },
  Concat: { inputs: { a: { shape: [2, 3] }, b: { shape: [2, 2] } }, build: (g, x) => g.op1('Concat', [x.a, x.b], { axis: 1 }) },
  'Concat (symbolic shapes)': {
    inputs: { a: { shape: [2, 3] }, b: { shape: [1, 3] } },
    symbolic: true,
    build: (g, x) => g.op1('Concat', [x.a, x.b], { axis: 0 }),
  },
  'Split (one piece unused)': {
    inputs: { a: { shape: [2, 6] } },
    build: (g, x) => {
      const [p, , r] = g.op('Split', [x.a, g.int64([2, 1, 3])], { axis: 1 }, { outputs: 3 });
      return g.op1('Concat', [r, p], { axis: 1 });
    },
  },
};

// Composites the Llama forward is made of.
function rmsNorm(g: GraphBuilder, xv: string, w: string): string {
  const ms = g.op1('ReduceMean', [g.op1('Pow', [xv, g.scalar(2, 'float64')]), g.int64([-1])], { keepdims: 1 });
  const inv = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [ms, g.scalar(1e-5, 'float64')])])]);
  return g.op1('Mul', [g.op1('Mul', [xv, inv]), w]);
}
const composites: Record<string, FdCase> = {
  'RMSNorm (Pow, ReduceMean, Add, Sqrt, Reciprocal, Mul)': {
    inputs: { a: { shape: [2, 3, 4] }, w: { shape: [4] } },
    build: (g, x) => rmsNorm(g, x.a, x.w),
  },
  'RoPE (rotate-half: Slice, Neg, Concat, Mul, Add)': {
    inputs: { q: { shape: [1, 2, 3, 4] }, cos: { shape: [3, 4], fixed: true }, sin: { shape: [3, 4], fixed: true } },
    build: (g, x) => {
      const lo = g.op1('Slice', [x.q, g.int64([0]), g.int64([2]), g.int64([-1])]);
      const hi = g.op1('Slice', [x.q, g.int64([2]), g.int64([4]), g.int64([-1])]);
      const rot = g.op1('Concat', [g.op1('Neg', [hi]), lo], { axis: -1 });
      return g.op1('Add', [g.op1('Mul', [x.q, x.cos]), g.op1('Mul', [rot, x.sin])]);
    },
  },
  'label log-probs (LogSoftmax → GatherElements, one fused rule)': {
    inputs: { z: { shape: [2, 3, 5] }, labels: { shape: [2, 3, 1], dtype: 'int64', data: [4, 0, 2, 2, 2, 1], fixed: true } },
    build: (g, x) => g.op1('GatherElements', [g.op1('LogSoftmax', [x.z], { axis: -1 }), x.labels], { axis: 2 }),
  },
  'label log-probs with the log-softmax also read elsewhere (rules apart)': {
    inputs: { z: { shape: [2, 4] }, labels: { shape: [2, 2], dtype: 'int64', data: [3, 3, 0, 1], fixed: true } },
    build: (g, x) => {
      const ls = g.op1('LogSoftmax', [x.z], { axis: 1 });
      return g.op1('Add', [g.op1('GatherElements', [ls, x.labels], { axis: 1 }), g.op1('Slice', [ls, g.int64([0]), g.int64([2]), g.int64([1])])]);
    },
  },
  'Gather into a value with another gradient (tied embedding and lm_head)': {
    inputs: { emb: { shape: [5, 3] }, ids: { shape: [2, 2], dtype: 'int64', data: [0, 3, 3, 1], fixed: true } },
    build: (g, x) => g.op1('MatMul', [g.op1('Gather', [x.emb, x.ids], { axis: 0 }), g.op1('Transpose', [x.emb], { perm: [1, 0] })]),
  },
  'SiLU (x * Sigmoid(x))': { inputs: { a: { shape: [7] } }, build: (g, x) => g.op1('Mul', [x.a, g.op1('Sigmoid', [x.a])]) },
  'log-sigmoid (-Softplus(-x))': { inputs: { a: { shape: [7] } }, build: (g, x) => g.op1('Neg', [g.op1('Softplus', [g.op1('Neg', [x.a])])]) },
};

for (const [name, c] of Object.entries({ ...cases, ...composites })) {
  test(`VJP ${name} matches finite differences`, async () => {
    await fdCheck(c);
  });
}
