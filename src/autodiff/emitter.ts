import type { Attributes, GraphBuilder } from '../onnx/builder.ts';
import type { DType, HostTensor } from '../model/tensor.ts';
import { GraphInfo, sameDim } from './graph-info.ts';

/**
 * Emits the ops that gradient rules are written in, keeping shape/dtype inference current so that
 * each rule can ask for the shape of what it just built. Short names (`mul`, `sub`, ...) keep each
 * VJP rule close to the math it implements.
 */
export class Emitter {
  private readonly shapeCache = new Map<string, string>();

  constructor(
    readonly g: GraphBuilder,
    readonly info: GraphInfo,
  ) {}

  op(opType: string, inputs: string[], attributes: Attributes = {}, domain?: string): string {
    const out = this.g.op1(opType, inputs, attributes, domain);
    this.info.update();
    return out;
  }

  opN(opType: string, inputs: string[], outputs: number, attributes: Attributes = {}): string[] {
    const out = this.g.op(opType, inputs, attributes, { outputs });
    this.info.update();
    return out;
  }

  add = (a: string, b: string) => this.op('Add', [a, b]);
  sub = (a: string, b: string) => this.op('Sub', [a, b]);
  mul = (a: string, b: string) => this.op('Mul', [a, b]);
  div = (a: string, b: string) => this.op('Div', [a, b]);
  neg = (a: string) => this.op('Neg', [a]);
  exp = (a: string) => this.op('Exp', [a]);
  sigmoid = (a: string) => this.op('Sigmoid', [a]);
  reshape = (a: string, shape: string) => this.op('Reshape', [a, shape]);
  transpose = (a: string, perm: number[]) => this.op('Transpose', [a], { perm });
  matmul = (a: string, b: string) => this.op('MatMul', [a, b]);
  where = (c: string, a: string, b: string) => this.op('Where', [c, a, b]);
  castLike = (a: string, like: string) => this.op('CastLike', [a, like]);
  expand = (a: string, shape: string) => this.op('Expand', [a, shape]);
  sumAxes = (a: string, axes: number[], keepdims: boolean) =>
    this.op('ReduceSum', [a, this.g.int64(axes)], { keepdims: keepdims ? 1 : 0 });
  int64 = (values: number[]) => this.g.int64(values);

  /** Shape(v), emitted once per value. */
  shapeOf(v: string): string {
    let s = this.shapeCache.get(v);
    if (!s) {
      s = this.op('Shape', [v]);
      this.shapeCache.set(v, s);
    }
    return s;
  }

  /** A scalar constant of v's dtype (float32 when unknown). */
  scalarLike(value: number, like: string): string {
    const dtype = this.info.dtype(like) ?? 'float32';
    return this.g.constant(scalarTensor(value, dtype), 'c');
  }

  /** A shape as a constant when all dims are known, else Shape(v) at runtime. */
  shapeValue(v: string): string {
    const s = this.info.shape(v);
    if (s && s.every((d) => typeof d === 'number')) return this.int64(s as number[]);
    return this.shapeOf(v);
  }

  zerosLike(v: string): string {
    const dtype = this.info.dtype(v) ?? 'float32';
    return this.op('ConstantOfShape', [this.shapeValue(v)], { value: scalarTensor(0, dtype, [1]) });
  }

  /**
   * Sums `grad` (shaped like a broadcast result) down to the shape of `target`, the operand that was
   * broadcast — the backward of numpy broadcasting. Axes are chosen at build time when the shapes
   * say which axes were broadcast; otherwise they are found at runtime from Shape ops.
   */
  sumToShape(grad: string, target: string): string {
    const gs = this.info.shape(grad);
    const ts = this.info.shape(target);
    if (gs && ts && ts.length <= gs.length) {
      const lead = gs.length - ts.length;
      const axes: number[] = [];
      let certain = true;
      for (let i = 0; i < gs.length; i++) {
        if (i < lead) axes.push(i);
        else {
          const td = ts[i - lead];
          if (td === 1) {
            if (gs[i] !== 1) axes.push(i);
          } else if (!(typeof td === 'number' || sameDim(td, gs[i]))) certain = false;
        }
      }
      if (certain) {
        if (axes.length === 0) return grad;
        const summed = this.sumAxes(grad, axes, true);
        return lead > 0 ? this.reshape(summed, this.shapeValue(target)) : summed;
      }
    }
    return this.sumToShapeAtRuntime(grad, target);
  }

  private sumToShapeAtRuntime(grad: string, target: string): string {
    const gShape = this.shapeOf(grad);
    const tShape = this.shapeOf(target);
    const padLen = this.op('Unsqueeze', [this.op('Sub', [this.op('Size', [gShape]), this.op('Size', [tShape])]), this.int64([0])]);
    const ones = this.op('ConstantOfShape', [padLen], { value: scalarTensor(1, 'int64', [1]) });
    const tPadded = this.op('Concat', [ones, tShape], { axis: 0 });
    const one = this.int64([1]);
    const broadcast = this.op('And', [this.op('Equal', [tPadded, one]), this.op('Not', [this.op('Equal', [gShape, one])])]);
    const axes = this.reshape(this.op('NonZero', [broadcast]), this.int64([-1]));
    const summed = this.op('ReduceSum', [grad, axes], { keepdims: 1, noop_with_empty_axes: 1 });
    return this.reshape(summed, tShape);
  }
}

export function scalarTensor(value: number, dtype: DType, shape: number[] = []): HostTensor {
  switch (dtype) {
    case 'float32':
      return { dtype, shape, data: Float32Array.of(value) };
    case 'float64':
      return { dtype, shape, data: Float64Array.of(value) };
    case 'int64':
      return { dtype, shape, data: BigInt64Array.of(BigInt(value)) };
    case 'int32':
      return { dtype, shape, data: Int32Array.of(value) };
    default:
      throw new Error(`autodiff: no scalar constant for dtype ${dtype}`);
  }
}
