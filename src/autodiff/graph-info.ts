import onnxProto from 'onnx-proto';
import type { GraphBuilder, GraphNode } from '../onnx/builder.ts';
import { onnxDataType } from '../onnx/builder.ts';
import type { DType, HostTensor } from '../model/tensor.ts';

/**
 * What the autodiff needs to know about each value of a graph, inferred statically from the graph
 * inputs, initializers and node attributes: its dtype and its shape. A dimension is a number, a
 * symbol (a string from a graph input such as 'batch': equal symbols are equal sizes) or null
 * (unknown). An unknown shape (undefined) means even the rank is unknown.
 *
 * Known shapes let the VJP rules pick broadcast axes and transpose permutations at build time;
 * where a dimension is unknown the rules fall back to runtime Shape ops (see `sumToShape`).
 */

export type Dim = number | string | null;
export type Shape = Dim[];

const ONNX_TO_DTYPE = new Map<number, DType>(
  (['float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int8', 'uint8', 'bool'] as DType[]).map((d) => [onnxDataType(d), d]),
);

export function dtypeFromOnnx(code: number): DType {
  const d = ONNX_TO_DTYPE.get(code);
  if (!d) throw new Error(`ONNX data type ${code} is not supported`);
  return d;
}

export const FLOAT_DTYPES: ReadonlySet<DType> = new Set(['float32', 'float64', 'float16', 'bfloat16']);

export class GraphInfo {
  readonly shapes = new Map<string, Shape | undefined>();
  readonly dtypes = new Map<string, DType>();
  readonly producer = new Map<string, GraphNode>();
  private readonly constants = new Map<string, HostTensor>();
  /** 1-D int64 values whose elements are known as dims (shape arithmetic: Shape, Concat, Gather). */
  private readonly dimVectors = new Map<string, Dim[]>();
  private inferredUpTo = 0;

  constructor(readonly g: GraphBuilder) {
    for (const i of g.inputs) {
      this.shapes.set(i.name, [...i.shape]);
      this.dtypes.set(i.name, i.dtype);
    }
    for (const [name, t] of g.initializers) {
      this.shapes.set(name, [...t.shape]);
      this.dtypes.set(name, t.dtype);
      this.constants.set(name, t);
    }
    this.update();
  }

  /** Infers shapes/dtypes of nodes appended since the last call (the gradient nodes, as they are emitted). */
  update(): void {
    for (const [name, t] of this.g.initializers) {
      if (!this.constants.has(name)) {
        this.constants.set(name, t);
        this.shapes.set(name, [...t.shape]);
        this.dtypes.set(name, t.dtype);
      }
    }
    for (; this.inferredUpTo < this.g.nodes.length; this.inferredUpTo++) {
      const node = this.g.nodes[this.inferredUpTo];
      for (const o of node.outputs) if (o) this.producer.set(o, node);
      if (node.opType === 'Constant' && node.attributes.value && typeof node.attributes.value === 'object' && 'data' in node.attributes.value) {
        this.constants.set(node.outputs[0], node.attributes.value);
      }
      const dtypes = inferDtypes(node, this);
      const dims = inferDimVector(node, this);
      if (dims) this.dimVectors.set(node.outputs[0], dims);
      const shapes = inferShapes(node, this);
      node.outputs.forEach((o, k) => {
        if (!o) return;
        if (dtypes[k]) this.dtypes.set(o, dtypes[k]!);
        this.shapes.set(o, shapes[k]);
      });
    }
  }

  shape(v: string): Shape | undefined {
    return this.shapes.get(v);
  }

  rank(v: string): number | undefined {
    return this.shapes.get(v)?.length;
  }

  /** The rank, or a clear error naming the value and the op that needs it. */
  requireRank(v: string, why: string): number {
    const r = this.rank(v);
    if (r === undefined) throw new Error(`autodiff: the rank of '${v}' is unknown but ${why} needs it (give graph inputs shapes)`);
    return r;
  }

  dtype(v: string): DType | undefined {
    return this.dtypes.get(v);
  }

  /** The value of a constant (initializer or Constant node), if it is one. */
  constant(v: string): HostTensor | undefined {
    return this.constants.get(v);
  }

  /** Integer values of a constant int tensor (axes, shapes, starts), or undefined when not constant. */
  ints(v: string | undefined): number[] | undefined {
    if (!v) return undefined;
    const t = this.constants.get(v);
    if (!t) return undefined;
    return Array.from(t.data as ArrayLike<number | bigint>, (x) => Number(x));
  }

  /**
   * The elements of a 1-D int64 value as dims: a constant's numbers, or what Shape/Concat/Gather of
   * shapes hold (symbols included), so that Reshape(x, Concat(Shape(y), [n])) keeps y's symbols.
   */
  dimVector(v: string | undefined): Dim[] | undefined {
    if (!v) return undefined;
    const known = this.dimVectors.get(v);
    if (known) return known;
    const t = this.constants.get(v);
    if (!t || t.shape.length !== 1 || (t.dtype !== 'int64' && t.dtype !== 'int32')) return undefined;
    return Array.from(t.data as ArrayLike<number | bigint>, (x) => Number(x));
  }

  /** Numeric value of a scalar-like constant (all elements equal), e.g. the exponent of Pow. */
  scalarConstant(v: string): number | undefined {
    const t = this.constants.get(v);
    if (!t || t.data.length === 0) return undefined;
    const first = Number(t.data[0]);
    for (let i = 1; i < t.data.length; i++) if (Number(t.data[i]) !== first) return undefined;
    return first;
  }
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Size equality that is certain: equal numbers or equal symbols. */
export function sameDim(a: Dim, b: Dim): boolean {
  return a !== null && a === b;
}

export function broadcastShapes(shapes: Array<Shape | undefined>): Shape | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(...shapes.map((s) => s!.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let dim: Dim = 1;
    for (const s of shapes as Shape[]) {
      const d = i - (rank - s.length) >= 0 ? s[i - (rank - s.length)] : 1;
      if (d === 1) continue;
      if (dim === 1) dim = d;
      else if (!sameDim(dim, d)) dim = typeof dim === 'number' && typeof d === 'number' ? Math.max(dim, d) : typeof d === 'number' ? d : typeof dim === 'number' ? dim : null;
    }
    out.push(dim);
  }
  return out;
}

/**
 * Dims as monomials: a symbol dim may be a product 'c*s1*s2' (coefficient, then symbols sorted), so
 * that Reshape(x [rows, seq, D], [-1, D]) gives 'rows*seq' rows and reshaping back recovers 'seq'.
 */
interface Monomial {
  coef: number;
  symbols: string[];
}

function toMonomial(d: Dim): Monomial | null {
  if (d === null) return null;
  if (typeof d === 'number') return { coef: d, symbols: [] };
  const parts = d.split('*');
  const coef = /^\d+$/.test(parts[0]) ? Number(parts.shift()) : 1;
  return { coef, symbols: parts };
}

function fromMonomial(m: Monomial): Dim {
  if (m.symbols.length === 0) return m.coef;
  if (m.coef === 0) return 0;
  const syms = [...m.symbols].sort().join('*');
  return m.coef === 1 ? syms : `${m.coef}*${syms}`;
}

/** The product of dims (null when one is unknown). */
export function productDim(dims: Dim[]): Dim {
  let acc: Monomial = { coef: 1, symbols: [] };
  for (const d of dims) {
    const m = toMonomial(d);
    if (!m) return null;
    acc = { coef: acc.coef * m.coef, symbols: [...acc.symbols, ...m.symbols] };
  }
  return fromMonomial(acc);
}

/** a / b when it is exact (b's symbols among a's, coefficients divisible), else null. */
export function quotientDim(a: Dim, b: Dim): Dim {
  const [ma, mb] = [toMonomial(a), toMonomial(b)];
  if (!ma || !mb || mb.coef === 0 || ma.coef % mb.coef !== 0) return null;
  const rest = [...ma.symbols];
  for (const s of mb.symbols) {
    const i = rest.indexOf(s);
    if (i < 0) return null;
    rest.splice(i, 1);
  }
  return fromMonomial({ coef: ma.coef / mb.coef, symbols: rest });
}

/** Dim vectors of shape arithmetic (see GraphInfo.dimVector). */
function inferDimVector(node: GraphNode, info: GraphInfo): Dim[] | undefined {
  const a = node.attributes;
  switch (node.opType) {
    case 'Shape': {
      const x = info.shape(node.inputs[0]);
      if (!x) return undefined;
      const start = normAxis((a.start as number | undefined) ?? 0, x.length);
      const end = a.end === undefined ? x.length : normAxis(a.end as number, x.length);
      return x.slice(Math.max(0, start), Math.min(x.length, end));
    }
    case 'Concat': {
      if ((a.axis as number) !== 0 && (a.axis as number) !== -1) return undefined;
      const parts = node.inputs.map((i) => info.dimVector(i));
      return parts.every((p) => p) ? parts.flat() as Dim[] : undefined;
    }
    case 'Gather': {
      const x = info.dimVector(node.inputs[0]);
      const idx = info.constant(node.inputs[1]);
      if (!x || !idx || idx.shape.length !== 1 || ((a.axis as number | undefined) ?? 0) !== 0) return undefined;
      return Array.from(idx.data as ArrayLike<number | bigint>, (i) => x[normAxis(Number(i), x.length)] ?? null);
    }
    case 'Reshape': {
      // a one-element shape vector as a scalar (Reshape(Shape(x, 1, 2), [])): kept as its one dim
      const x = info.dimVector(node.inputs[0]);
      const target = info.ints(node.inputs[1]);
      return x && x.length === 1 && target && target.length <= 1 ? x : undefined;
    }
    default:
      return undefined;
  }
}

/** Length of Range(start, limit, 1) when start is 0 or limit − n (causal-mask index ranges). */
function rangeLength(node: GraphNode, info: GraphInfo): Dim {
  const [start, limit, delta] = node.inputs;
  if (info.scalarConstant(delta) !== 1) return null;
  const limitDim = info.dimVector(limit)?.[0] ?? null;
  if (info.scalarConstant(start) === 0) return limitDim;
  const startNode = info.producer.get(start);
  if (startNode?.opType === 'Sub' && startNode.inputs[0] === limit) return info.dimVector(startNode.inputs[1])?.[0] ?? null;
  return null;
}

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Sum', 'Max', 'Min', 'Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Mod', 'PRelu']);
const SAME_SHAPE = new Set([
  'Neg', 'Exp', 'Log', 'Sqrt', 'Reciprocal', 'Sigmoid', 'Tanh', 'Softplus', 'Relu', 'Abs', 'Cast', 'CastLike', 'Identity',
  'Softmax', 'LogSoftmax', 'CumSum', 'Not', 'Erf', 'Floor', 'Ceil', 'Sin', 'Cos', 'IsNaN', 'IsInf', 'Trilu', 'Clip', 'Sign', 'HardSigmoid', 'LeakyRelu', 'Elu', 'Round',
  'QuickGelu', 'RotaryEmbedding',
]);
const COMPARISONS = new Set(['Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf']);
const REDUCTIONS = new Set(['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceLogSumExp', 'ReduceProd', 'ReduceSumSquare', 'ReduceL2']);

function inferDtypes(node: GraphNode, info: GraphInfo): Array<DType | undefined> {
  const first = node.inputs[0] ? info.dtype(node.inputs[0]) : undefined;
  const all = (d: DType | undefined) => node.outputs.map(() => d);
  switch (node.opType) {
    case 'Cast':
      return all(dtypeFromOnnx(node.attributes.to as number));
    case 'CastLike':
      return all(info.dtype(node.inputs[1]));
    case 'Shape':
    case 'Size':
    case 'NonZero':
    case 'ArgMax':
    case 'ArgMin':
      return all('int64');
    case 'Where':
      return all(info.dtype(node.inputs[1]));
    case 'Constant':
    case 'ConstantOfShape': {
      const v = node.attributes.value;
      return all(v && typeof v === 'object' && 'dtype' in v ? v.dtype : 'float32');
    }
    default:
      return all(COMPARISONS.has(node.opType) ? 'bool' : first);
  }
}

function inferShapes(node: GraphNode, info: GraphInfo): Array<Shape | undefined> {
  const s = (i: number) => (node.inputs[i] ? info.shape(node.inputs[i]) : undefined);
  const a = node.attributes;
  const one = (shape: Shape | undefined) => [shape];
  const op = node.opType;
  if (ELEMENTWISE.has(op)) return one(broadcastShapes(node.inputs.map((_, i) => s(i))));
  if (SAME_SHAPE.has(op)) return one(s(0) && [...s(0)!]);
  if (REDUCTIONS.has(op)) {
    const x = s(0);
    if (!x) return one(undefined);
    const keep = (a.keepdims ?? 1) === 1;
    const axesConst = node.inputs[1] ? info.ints(node.inputs[1]) : (a.axes as number[] | undefined) ?? [];
    if (axesConst === undefined) return one(keep ? x.map(() => null) : undefined);
    const axes = new Set((axesConst.length === 0 ? x.map((_, i) => i) : axesConst).map((ax) => normAxis(ax, x.length)));
    return one(x.flatMap((d, i) => (axes.has(i) ? (keep ? [1] : []) : [d])));
  }
  switch (op) {
    case 'Where':
      return one(broadcastShapes([s(0), s(1), s(2)]));
    case 'MatMul': {
      const [x, y] = [s(0), s(1)];
      if (!x || !y) return one(undefined);
      if (x.length === 1 && y.length === 1) return one([]);
      if (x.length === 1) return one([...y.slice(0, -2), y[y.length - 1]]);
      if (y.length === 1) return one(x.slice(0, -1));
      const batch = broadcastShapes([x.slice(0, -2), y.slice(0, -2)]);
      return one(batch && [...batch, x[x.length - 2], y[y.length - 1]]);
    }
    case 'Gemm': {
      const [x, y] = [s(0), s(1)];
      if (!x || !y) return one([null, null]);
      return one([a.transA ? x[1] : x[0], a.transB ? y[0] : y[1]]);
    }
    case 'Transpose': {
      const x = s(0);
      if (!x) return one(undefined);
      const perm = (a.perm as number[] | undefined) ?? x.map((_, i) => x.length - 1 - i);
      return one(perm.map((p) => x[p]));
    }
    case 'Reshape': {
      const target = info.dimVector(node.inputs[1]);
      const x = s(0);
      if (!target) {
        const len = s(1)?.[0];
        return one(typeof len === 'number' ? Array<Dim>(len).fill(null) : undefined);
      }
      const dims: Shape = target.map((d, i) => (d === 0 && !a.allowzero ? (x?.[i] ?? null) : d));
      const minus = dims.indexOf(-1);
      if (minus >= 0) dims[minus] = x ? quotientDim(productDim(x), productDim(dims.filter((_, i) => i !== minus))) : null;
      return one(dims);
    }
    case 'Flatten': {
      const x = s(0);
      if (!x) return one([null, null]);
      const axis = normAxis((a.axis as number | undefined) ?? 1, x.length);
      return one([productDim(x.slice(0, axis)), productDim(x.slice(axis))]);
    }
    case 'Shape': {
      const x = s(0);
      if (!x) return one([null]);
      const start = normAxis((a.start as number | undefined) ?? 0, x.length);
      const end = a.end === undefined ? x.length : normAxis(a.end as number, x.length);
      return one([Math.max(0, Math.min(x.length, end) - Math.max(0, start))]);
    }
    case 'Size':
      return one([]);
    case 'Gather': {
      const [x, idx] = [s(0), s(1)];
      if (!x || !idx) return one(undefined);
      const axis = normAxis((a.axis as number | undefined) ?? 0, x.length);
      return one([...x.slice(0, axis), ...idx, ...x.slice(axis + 1)]);
    }
    case 'GatherElements':
      return one(s(1) && [...s(1)!]);
    case 'ScatterND':
    case 'ScatterElements':
      return one(s(0) && [...s(0)!]);
    case 'Pad': {
      const x = s(0);
      const pads = info.ints(node.inputs[1]);
      if (!x) return one(undefined);
      if (!pads || node.inputs[3] || pads.length !== 2 * x.length) return one(x.map(() => null));
      return one(x.map((d, i) => {
        const extra = pads[i] + pads[i + x.length];
        return extra === 0 ? d : typeof d === 'number' ? d + extra : null;
      }));
    }
    case 'Unsqueeze': {
      const x = s(0);
      const axes = info.ints(node.inputs[1]) ?? (a.axes as number[] | undefined);
      if (!x || !axes) return one(undefined);
      const rank = x.length + axes.length;
      const set = new Set(axes.map((ax) => normAxis(ax, rank)));
      const out: Shape = [];
      let k = 0;
      for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x[k++]);
      return one(out);
    }
    case 'Squeeze': {
      const x = s(0);
      if (!x) return one(undefined);
      const axes = node.inputs[1] ? info.ints(node.inputs[1]) : ((a.axes as number[] | undefined) ?? null);
      if (axes === undefined) return one(undefined);
      if (axes === null) return x.some((d) => d === null || typeof d === 'string') ? one(undefined) : one(x.filter((d) => d !== 1));
      const set = new Set(axes.map((ax) => normAxis(ax, x.length)));
      return one(x.filter((_, i) => !set.has(i)));
    }
    case 'Expand': {
      const target = info.dimVector(node.inputs[1]);
      if (target) return one(broadcastShapes([s(0), target]));
      const len = s(1)?.[0];
      const x = s(0);
      return one(typeof len === 'number' && x ? Array<Dim>(Math.max(len, x.length)).fill(null) : undefined);
    }
    case 'Slice':
      return one(sliceShape(node, info));
    case 'Concat': {
      const shapes = node.inputs.map((_, i) => s(i));
      if (shapes.some((x) => !x)) {
        const known = shapes.find((x) => x);
        return one(known && known.map(() => null));
      }
      const rank = shapes[0]!.length;
      const axis = normAxis(a.axis as number, rank);
      const out: Shape = shapes[0]!.map((d, i) => (i === axis ? null : d));
      const sizes = shapes.map((x) => x![axis]);
      out[axis] = sizes.every((d) => typeof d === 'number') ? (sizes as number[]).reduce((p, q) => p + q, 0) : null;
      return one(out);
    }
    case 'SimplifiedLayerNormalization': {
      // y like x; inv_std_var like x with the normalised (last) axis 1
      const x = s(0);
      return [x && [...x], x && [...x.slice(0, -1), 1]];
    }
    case 'Split': {
      const x = s(0);
      if (!x) return node.outputs.map(() => undefined);
      const axis = normAxis((a.axis as number | undefined) ?? 0, x.length);
      const split = info.ints(node.inputs[1]);
      return node.outputs.map((_, k) => {
        const out = [...x];
        const total = x[axis];
        out[axis] = split ? split[k] : typeof total === 'number' && total % node.outputs.length === 0 ? total / node.outputs.length : null;
        return out;
      });
    }
    case 'Constant': {
      const v = a.value;
      return one(v && typeof v === 'object' && 'shape' in v ? [...v.shape] : undefined);
    }
    case 'ConstantOfShape': {
      const target = info.dimVector(node.inputs[0]);
      if (target) return one(target);
      const len = s(0)?.[0];
      return one(typeof len === 'number' ? Array<Dim>(len).fill(null) : undefined);
    }
    case 'Range':
      return one([rangeLength(node, info)]);
    case 'NonZero':
      // the count is a runtime value of its own: a fresh symbol keeps values indexed by it comparable
      return one([s(0)?.length ?? null, `nonzero_${node.outputs[0]}`]);
    default:
      return node.outputs.map(() => undefined);
  }
}

function sliceShape(node: GraphNode, info: GraphInfo): Shape | undefined {
  const x = info.shape(node.inputs[0]);
  if (!x) return undefined;
  const starts = info.ints(node.inputs[1]);
  const ends = info.ints(node.inputs[2]);
  const axes = node.inputs[3] ? info.ints(node.inputs[3]) : starts?.map((_, i) => i);
  const steps = node.inputs[4] ? info.ints(node.inputs[4]) : starts?.map(() => 1);
  const out: Shape = [...x];
  if (!starts || !ends || !axes || !steps) {
    if (axes) for (const ax of axes) out[normAxis(ax, x.length)] = null;
    else return x.map(() => null);
    return out;
  }
  axes.forEach((ax, k) => {
    const i = normAxis(ax, x.length);
    const d = x[i];
    if (typeof d !== 'number') {
      out[i] = null;
      return;
    }
    const step = steps[k];
    const clampIdx = (v: number) => {
      const w = v < 0 ? v + d : v;
      return step > 0 ? Math.min(Math.max(w, 0), d) : Math.min(Math.max(w, -1), d - 1);
    };
    const [b, e] = [clampIdx(starts[k]), clampIdx(ends[k])];
    out[i] = Math.max(0, Math.ceil((e - b) / step));
  });
  return out;
}
