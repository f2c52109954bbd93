import type { GraphNode } from '../onnx/builder.ts';
import type { Emitter } from './emitter.ts';
import { scalarTensor } from './emitter.ts';

/**
 * Vector-Jacobian products, one small rule per ONNX op. Each rule restates the forward it
 * differentiates, gets the gradients of the node's outputs (`dy[k]`, undefined where none flows)
 * and returns the gradients of its inputs (undefined where not needed or not differentiable).
 * Broadcasting ops sum their gradients back to the operand's shape (`e.sumToShape`).
 */

export interface VjpArgs {
  e: Emitter;
  node: GraphNode;
  /** Gradient of each output (undefined: no gradient flows into that output). */
  dy: Array<string | undefined>;
  /** Whether input k needs a gradient. */
  needs: (k: number) => boolean;
  /**
   * The gradient contributions input k has received so far (from later nodes), handed over for the
   * rule to fold into its own result, which then stands for them (undefined: none yet).
   */
  take: (k: number) => string | undefined;
}

export type VjpRule = (args: VjpArgs) => Array<string | undefined>;

type Grads = Array<string | undefined>;

const x0 = (n: GraphNode) => n.inputs[0];
const y0 = (n: GraphNode) => n.outputs[0];

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function inversePerm(perm: number[]): number[] {
  const inv = Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return inv;
}

/** The single-output gradient, or an error naming the node (multi-output ops handle dy themselves). */
function dyOf(node: GraphNode, dy: Grads): string {
  if (!dy[0]) throw new Error(`autodiff: no gradient reached ${node.name} (${node.opType})`);
  return dy[0];
}

/** Axes attribute (opset < 13) or input (opset ≥ 13/18) of a reduce/squeeze op, as constants. */
function axesOf(e: Emitter, node: GraphNode, inputIndex: number): number[] | undefined {
  const fromInput = node.inputs[inputIndex] ? e.info.ints(node.inputs[inputIndex]) : undefined;
  if (node.inputs[inputIndex] && fromInput === undefined) {
    throw new Error(`autodiff: ${node.name} (${node.opType}) has non-constant axes; only constant axes are differentiable here`);
  }
  return fromInput ?? (node.attributes.axes as number[] | undefined);
}

/** dy of a reduction, reshaped so that it broadcasts against the reduced input. */
function keepDims(e: Emitter, node: GraphNode, dy: string): string {
  const keep = (node.attributes.keepdims ?? 1) === 1;
  const axes = axesOf(e, node, 1);
  if (keep || !axes || axes.length === 0) return dy;
  const rank = e.info.requireRank(x0(node), `${node.opType} backward (keepdims=0)`);
  return e.op('Unsqueeze', [dy, e.int64(axes.map((a) => normAxis(a, rank)))]);
}

/** Number of elements each output element of a reduction averaged over. */
function reducedCount(e: Emitter, node: GraphNode, like: string): string {
  const x = e.info.shape(x0(node));
  const axes = axesOf(e, node, 1);
  if (x) {
    const reduced = !axes || axes.length === 0 ? x : axes.map((a) => x[normAxis(a, x.length)]);
    if (reduced.every((d) => typeof d === 'number')) return e.scalarLike((reduced as number[]).reduce((p, q) => p * q, 1), like);
  }
  return e.castLike(e.div(e.op('Size', [x0(node)]), e.op('Size', [y0(node)])), like);
}

function floatAttr(node: GraphNode, name: string, fallback: number): number {
  const v = node.attributes[name];
  if (v === undefined) return fallback;
  if (typeof v === 'number') return v;
  if (typeof v === 'object' && 'float' in v) return v.float;
  throw new Error(`autodiff: ${node.name} (${node.opType}): attribute ${name} is not a number`);
}

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return perm;
}

export const VJP_RULES: Record<string, VjpRule> = {
  // y = x
  Identity: ({ node, dy }) => [dyOf(node, dy)],

  // y = cast(x): the gradient goes back in x's dtype (only float x is differentiable)
  Cast: ({ e, node, dy }) => [e.castLike(dyOf(node, dy), x0(node))],

  // y = a + b (broadcast)
  Add: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [a, b] = node.inputs;
    return [needs(0) ? e.sumToShape(g, a) : undefined, needs(1) ? e.sumToShape(g, b) : undefined];
  },

  // y = x0 + x1 + ... (broadcast)
  Sum: ({ e, node, dy, needs }) => node.inputs.map((x, k) => (needs(k) ? e.sumToShape(dyOf(node, dy), x) : undefined)),

  // y = a - b
  Sub: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [a, b] = node.inputs;
    return [needs(0) ? e.sumToShape(g, a) : undefined, needs(1) ? e.sumToShape(e.neg(g), b) : undefined];
  },

  // y = a * b
  Mul: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [a, b] = node.inputs;
    return [needs(0) ? e.sumToShape(e.mul(g, b), a) : undefined, needs(1) ? e.sumToShape(e.mul(g, a), b) : undefined];
  },

  // y = a / b:  da = dy / b,  db = -dy * y / b
  Div: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [a, b] = node.inputs;
    return [
      needs(0) ? e.sumToShape(e.div(g, b), a) : undefined,
      needs(1) ? e.sumToShape(e.neg(e.div(e.mul(g, y0(node)), b)), b) : undefined,
    ];
  },

  // y = -x
  Neg: ({ e, node, dy }) => [e.neg(dyOf(node, dy))],

  // y = x^p (p not differentiated):  dx = dy * p * x^(p-1)
  Pow: ({ e, node, dy, needs }) => {
    const [x, p] = node.inputs;
    if (needs(1)) throw new Error(`autodiff: ${node.name} (Pow): the gradient with respect to the exponent is not supported`);
    const c = e.info.scalarConstant(p);
    const g = dyOf(node, dy);
    if (c === 2) return [e.mul(g, e.mul(e.scalarLike(2, x), x))];
    const pLike = e.castLike(p, x);
    const pMinus1 = c !== undefined ? e.scalarLike(c - 1, x) : e.sub(pLike, e.scalarLike(1, x));
    return [e.sumToShape(e.mul(g, e.mul(pLike, e.op('Pow', [x, pMinus1]))), x)];
  },

  // y = sqrt(x):  dx = dy * 0.5 / y
  Sqrt: ({ e, node, dy }) => [e.div(e.mul(dyOf(node, dy), e.scalarLike(0.5, x0(node))), y0(node))],

  // y = 1 / x:  dx = -dy * y^2
  Reciprocal: ({ e, node, dy }) => [e.neg(e.mul(dyOf(node, dy), e.mul(y0(node), y0(node))))],

  // y = exp(x):  dx = dy * y
  Exp: ({ e, node, dy }) => [e.mul(dyOf(node, dy), y0(node))],

  // y = log(x):  dx = dy / x
  Log: ({ e, node, dy }) => [e.div(dyOf(node, dy), x0(node))],

  // y = sigmoid(x):  dx = dy * y * (1 - y)
  Sigmoid: ({ e, node, dy }) => {
    const y = y0(node);
    return [e.mul(dyOf(node, dy), e.mul(y, e.sub(e.scalarLike(1, y), y)))];
  },

  // y = tanh(x):  dx = dy * (1 - y^2)
  Tanh: ({ e, node, dy }) => {
    const y = y0(node);
    return [e.mul(dyOf(node, dy), e.sub(e.scalarLike(1, y), e.mul(y, y)))];
  },

  // y = log(1 + exp(x)):  dx = dy * sigmoid(x)   (log-sigmoid(z) is written -Softplus(-z))
  Softplus: ({ e, node, dy }) => [e.mul(dyOf(node, dy), e.sigmoid(x0(node)))],

  // y = max(x, 0):  dx = dy where x > 0
  Relu: ({ e, node, dy }) => {
    const x = x0(node);
    return [e.where(e.op('Greater', [x, e.scalarLike(0, x)]), dyOf(node, dy), e.scalarLike(0, x))];
  },

  // y = x·sigmoid(αx) (com.microsoft QuickGelu; α = 1 is SiLU):  dx = dy·(s + αy(1 − s)), s = sigmoid(αx)
  // recomputed here, so the forward keeps only x and y
  QuickGelu: ({ e, node, dy }) => {
    const [x, y] = [x0(node), y0(node)];
    const alpha = floatAttr(node, 'alpha', 1.702);
    const s = e.sigmoid(alpha === 1 ? x : e.mul(x, e.scalarLike(alpha, x)));
    const ay = alpha === 1 ? y : e.mul(y, e.scalarLike(alpha, y));
    return [e.mul(dyOf(node, dy), e.add(s, e.mul(ay, e.sub(e.scalarLike(1, s), s))))];
  },

  // y = RoPE(x) at positions (com.microsoft RotaryEmbedding, rotate-half or interleaved): a rotation
  // of each pair by its angle θ, so dx = the rotation by −θ of dy = RoPE with the sin table negated
  RotaryEmbedding: ({ e, node, dy, needs }) => {
    if (needs(2) || needs(3)) throw new Error(`autodiff: ${node.name} (RotaryEmbedding): the cos/sin tables are not differentiable here`);
    const [, positions, cos, sin] = node.inputs;
    return [e.op('RotaryEmbedding', [dyOf(node, dy), positions, cos, e.neg(sin)], node.attributes, node.domain)];
  },

  // RMSNorm (onnxruntime's SimplifiedLayerNormalization over the last axis; outputs y and r):
  //   x̂ = x·r, r = (mean(x²) + ε)^(−½), y = x̂·w
  //   dw = Σ dy·x̂;  dx̂ = dy·w;  dx = r·(dx̂ − x̂·mean(dx̂·x̂))
  // with x̂ recomputed from x and r, so the forward keeps x, r [.., 1] and y only
  SimplifiedLayerNormalization: ({ e, node, dy, needs }) => {
    const [x, w] = node.inputs;
    const r = node.outputs[1];
    const axis = (node.attributes.axis as number | undefined) ?? -1;
    if (normAxis(axis, e.info.requireRank(x, `${node.name} backward`)) !== e.info.requireRank(x, `${node.name} backward`) - 1) {
      throw new Error(`autodiff: ${node.name} (SimplifiedLayerNormalization): only the last axis is differentiable here`);
    }
    if (!r) throw new Error(`autodiff: ${node.name} (SimplifiedLayerNormalization) needs its inv_std_var output for the backward`);
    if (dy[1]) throw new Error(`autodiff: ${node.name} (SimplifiedLayerNormalization): no gradient through inv_std_var`);
    const g = dyOf(node, dy);
    const xhat = e.mul(x, r);
    const dxhat = e.mul(g, w);
    const mean = e.op('ReduceMean', [e.mul(dxhat, xhat), e.int64([-1])], { keepdims: 1 });
    return [
      needs(0) ? e.mul(r, e.sub(dxhat, e.mul(xhat, mean))) : undefined,
      needs(1) ? e.sumToShape(e.mul(g, xhat), w) : undefined,
    ];
  },

  // y = softmax(x, axis):  dx = y * (dy - sum_axis(dy * y))
  Softmax: ({ e, node, dy }) => {
    const [g, y] = [dyOf(node, dy), y0(node)];
    const axis = (node.attributes.axis as number | undefined) ?? -1;
    return [e.mul(y, e.sub(g, e.sumAxes(e.mul(g, y), [axis], true)))];
  },

  // y = x - logsumexp_axis(x):  dx = dy - exp(y) * sum_axis(dy)
  LogSoftmax: ({ e, node, dy }) => {
    const [g, y] = [dyOf(node, dy), y0(node)];
    const axis = (node.attributes.axis as number | undefined) ?? -1;
    return [e.sub(g, e.mul(e.exp(y), e.sumAxes(g, [axis], true)))];
  },

  // y = sum over axes of x:  dx = dy broadcast back over the reduced axes
  ReduceSum: ({ e, node, dy }) => [e.expand(keepDims(e, node, dyOf(node, dy)), e.shapeValue(x0(node)))],

  // y = mean over axes of x:  dx = dy / n broadcast back
  ReduceMean: ({ e, node, dy }) => {
    const g = e.div(keepDims(e, node, dyOf(node, dy)), reducedCount(e, node, dyOf(node, dy)));
    return [e.expand(g, e.shapeValue(x0(node)))];
  },

  // y = log sum_axes exp(x):  dx = dy * exp(x - y)
  ReduceLogSumExp: ({ e, node, dy }) => {
    const x = x0(node);
    return [e.mul(keepDims(e, node, dyOf(node, dy)), e.exp(e.sub(x, keepDims(e, node, y0(node)))))];
  },

  // y[..., M, N] = a[..., M, K] @ b[..., K, N]:  da = dy @ b^T,  db = a^T @ dy  (summed over broadcast batch dims)
  MatMul: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [a, b] = node.inputs;
    const ra = e.info.requireRank(a, `MatMul backward of ${node.name}`);
    const rb = e.info.requireRank(b, `MatMul backward of ${node.name}`);
    if (ra < 2 || rb < 2) throw new Error(`autodiff: ${node.name} (MatMul) with a 1-D operand is not differentiable here; Unsqueeze it first`);
    const da = needs(0) ? e.sumToShape(e.matmul(g, e.transpose(b, swapLastTwo(rb))), a) : undefined;
    let db: string | undefined;
    const bShape = e.info.shape(b)!;
    if (needs(1) && rb === 2 && ra > 2 && bShape.every((d) => typeof d === 'number')) {
      // A shared weight: fold the batch dims into rows and let Gemm transpose a in place,
      // instead of materialising one [K, N] product per batch element and summing them.
      const [K, N] = bShape as number[];
      const a2 = e.reshape(a, e.int64([-1, K]));
      const g2 = e.reshape(g, e.int64([-1, N]));
      db = e.op('Gemm', [a2, g2], { transA: 1 });
    } else if (needs(1)) {
      db = e.sumToShape(e.matmul(e.transpose(a, swapLastTwo(ra)), g), b);
    }
    return [da, db];
  },

  // y = alpha * A' @ B' + beta * C, with A' = transA ? A^T : A and B' likewise
  Gemm: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [A, B, C] = node.inputs;
    const alpha = { float: floatAttr(node, 'alpha', 1) };
    const beta = floatAttr(node, 'beta', 1);
    const tA = (node.attributes.transA as number | undefined) ?? 0;
    const tB = (node.attributes.transB as number | undefined) ?? 0;
    const dA = !needs(0) ? undefined : tA ? e.op('Gemm', [B, g], { alpha, transA: tB, transB: 1 }) : e.op('Gemm', [g, B], { alpha, transB: 1 - tB });
    const dB = !needs(1) ? undefined : tB ? e.op('Gemm', [g, A], { alpha, transA: 1, transB: tA }) : e.op('Gemm', [A, g], { alpha, transA: 1 - tA });
    const dC = C && needs(2) ? e.sumToShape(beta === 1 ? g : e.mul(g, e.scalarLike(beta, g)), C) : undefined;
    return [dA, dB, dC];
  },

  // y[i..., :] = x[idx[i...], :] (axis 0, an embedding lookup):  dx[idx[i...], :] += dy[i..., :]
  // (scattered straight into x's other gradient when it has one: a tied lm_head's dW)
  Gather: ({ e, node, dy, needs, take }) => {
    const axis = (node.attributes.axis as number | undefined) ?? 0;
    if (needs(0) && axis !== 0) throw new Error(`autodiff: ${node.name} (Gather axis=${axis}): only axis 0 is differentiable here`);
    const [x, idx] = node.inputs;
    if (!needs(0)) return [];
    const idxColumn = e.op('Unsqueeze', [idx, e.int64([-1])]);
    return [e.op('ScatterND', [take(0) ?? e.zerosLike(x), idxColumn, dyOf(node, dy)], { reduction: 'add' })];
  },

  // y[i][j] = x[i][idx[i][j]] along axis:  dx[i][idx[i][j]] += dy[i][j]
  GatherElements: ({ e, node, dy }) => {
    const [x, idx] = node.inputs;
    const axis = (node.attributes.axis as number | undefined) ?? 0;
    return [e.op('ScatterElements', [e.zerosLike(x), idx, dyOf(node, dy)], { axis, reduction: 'add' })];
  },

  // y = cond ? a : b:  da = cond ? dy : 0,  db = cond ? 0 : dy
  Where: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const [cond, a, b] = node.inputs;
    const zero = e.scalarLike(0, g);
    return [
      undefined,
      needs(1) ? e.sumToShape(e.where(cond, g, zero), a) : undefined,
      needs(2) ? e.sumToShape(e.where(cond, zero, g), b) : undefined,
    ];
  },

  // Shape-only ops: y = reshape(x, ...):  dx = reshape(dy, shape(x))
  Reshape: ({ e, node, dy }) => [e.reshape(dyOf(node, dy), e.shapeValue(x0(node)))],
  Flatten: ({ e, node, dy }) => [e.reshape(dyOf(node, dy), e.shapeValue(x0(node)))],
  Squeeze: ({ e, node, dy }) => [e.reshape(dyOf(node, dy), e.shapeValue(x0(node)))],
  Unsqueeze: ({ e, node, dy }) => [e.reshape(dyOf(node, dy), e.shapeValue(x0(node)))],

  // y = expand(x, shape):  dx = dy summed back to x's shape
  Expand: ({ e, node, dy }) => [e.sumToShape(dyOf(node, dy), x0(node))],

  // y = transpose(x, perm):  dx = transpose(dy, perm^-1)
  Transpose: ({ e, node, dy }) => {
    let perm = node.attributes.perm as number[] | undefined;
    if (!perm) {
      const rank = e.info.requireRank(x0(node), `Transpose backward of ${node.name}`);
      perm = Array.from({ length: rank }, (_, i) => rank - 1 - i);
    }
    return [e.transpose(dyOf(node, dy), inversePerm(perm))];
  },

  // y = x[starts:ends] on some axes (step 1):  dx = dy padded with zeros back to x's shape
  Slice: ({ e, node, dy }) => [sliceBackward(e, node, dyOf(node, dy))],

  // y = concat(x_0, x_1, ..., axis):  dx_k = the k-th piece of dy
  Concat: ({ e, node, dy, needs }) => {
    const g = dyOf(node, dy);
    const rank = e.info.requireRank(g, `Concat backward of ${node.name}`);
    const axis = normAxis(node.attributes.axis as number, rank);
    const sizes = node.inputs.map((x) => e.info.shape(x)?.[axis] ?? null);
    const split = sizes.every((d) => typeof d === 'number')
      ? e.int64(sizes as number[])
      : e.op('Concat', node.inputs.map((x) => e.op('Gather', [e.shapeOf(x), e.int64([axis])])), { axis: 0 });
    const pieces = e.opN('Split', [g, split], node.inputs.length, { axis });
    return pieces.map((p, k) => (needs(k) ? p : undefined));
  },

  // y_k = the k-th piece of x along axis:  dx = concat(dy_k, or zeros where no gradient flows)
  Split: ({ e, node, dy }) => {
    const axis = (node.attributes.axis as number | undefined) ?? 0;
    const pieces = node.outputs.map((y, k) => dy[k] ?? e.zerosLike(y));
    return [e.op('Concat', pieces, { axis })];
  },
};

/**
 * Label log-probs, p = GatherElements(LogSoftmax(z), idx) along the same axis, differentiated as one
 * op:  dz = dy_logsoftmax − softmax(z)·Σ dy_logsoftmax  with dy_logsoftmax = scatter(dp), i.e.
 *   dz = scatter_add(−exp(y) · Σ_axis dp, idx, dp)
 * — two vocabulary-sized temporaries where the two rules apart make five.
 */
export function labelLogProbsVjp(e: Emitter, logSoftmax: GraphNode, gather: GraphNode, dp: string): string {
  const y = y0(logSoftmax);
  const axis = normAxis((gather.attributes.axis as number | undefined) ?? 0, e.info.requireRank(y, `label log-probs backward of ${gather.name}`));
  const base = e.mul(e.exp(y), e.neg(e.sumAxes(dp, [axis], true)));
  return e.op('ScatterElements', [base, gather.inputs[1], dp], { axis, reduction: 'add' });
}

/** The LogSoftmax whose output only this GatherElements reads, along the same axis (see labelLogProbsVjp). */
export function fusableLogSoftmax(e: Emitter, gather: GraphNode, readers: (v: string) => number): GraphNode | undefined {
  if (gather.opType !== 'GatherElements') return undefined;
  const ls = e.info.producer.get(gather.inputs[0]);
  if (!ls || ls.opType !== 'LogSoftmax' || readers(gather.inputs[0]) !== 1) return undefined;
  const rank = e.info.rank(gather.inputs[0]);
  if (rank === undefined) return undefined;
  const lsAxis = normAxis((ls.attributes.axis as number | undefined) ?? -1, rank);
  const gAxis = normAxis((gather.attributes.axis as number | undefined) ?? 0, rank);
  return lsAxis === gAxis ? ls : undefined;
}

function sliceBackward(e: Emitter, node: GraphNode, g: string): string {
  const [x, startsV, endsV, axesV, stepsV] = node.inputs;
  const steps = stepsV ? e.info.ints(stepsV) : undefined;
  if (stepsV && (!steps || steps.some((s) => s !== 1))) {
    throw new Error(`autodiff: ${node.name} (Slice) backward supports step 1 only`);
  }
  const zero = e.scalarLike(0, g);
  const starts = e.info.ints(startsV);
  const ends = e.info.ints(endsV);
  const xShape = e.info.shape(x);
  const axes = axesV ? e.info.ints(axesV) : starts?.map((_, i) => i);
  if (starts && ends && axes && xShape) {
    const dims = axes.map((a) => xShape[normAxis(a, xShape.length)]);
    if (dims.every((d) => typeof d === 'number')) {
      const clamp = (v: number, d: number) => Math.min(Math.max(v < 0 ? v + d : v, 0), d);
      // pads for every axis, no axes input: onnxruntime's transpose optimizer mishandles Pad's axes
      const begin = xShape.map(() => 0);
      const end = xShape.map(() => 0);
      axes.forEach((a, k) => {
        const i = normAxis(a, xShape.length);
        begin[i] = clamp(starts[k], dims[k] as number);
        end[i] = (dims[k] as number) - clamp(ends[k], dims[k] as number);
      });
      return e.op('Pad', [g, e.int64([...begin, ...end]), zero]);
    }
  }
  // Runtime pads: normalise negative and out-of-range starts/ends against Shape(x).
  const axesT = axesV ?? e.op('Range', [e.g.int64([0], []), e.op('Size', [startsV]), e.g.int64([1], [])]);
  const dims = e.op('Gather', [e.shapeOf(x), axesT]);
  const zeroI = e.g.int64([0], []);
  const norm = (v: string) => e.op('Min', [e.op('Max', [e.where(e.op('Less', [v, zeroI]), e.add(v, dims), v), zeroI]), dims]);
  const pads = e.op('Concat', [norm(startsV), e.sub(dims, norm(endsV))], { axis: 0 });
  return e.op('Pad', [g, pads, zero, axesT]);
}

export { scalarTensor };
