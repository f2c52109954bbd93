import assert from 'node:assert/strict';
import { GraphBuilder, serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { gradients } from '../../src/autodiff/reverse.ts';
import { GraphInfo } from '../../src/autodiff/graph-info.ts';
import type { HostTensor } from '../../src/model/tensor.ts';
import { Rng } from '../../src/util/random.ts';

/**
 * Finite-difference check of the autodiff on a float64 graph: for a random cotangent w, compares the
 * emitted gradient of f(x) = sum(y(x) * w) with central differences (f(x + h e_i) - f(x - h e_i)) / 2h
 * for every element of every differentiable input. Error is normwise: ||ad - fd|| / ||fd||.
 */
export interface FdInput {
  shape: number[];
  /** Values; random normal when absent. */
  data?: number[];
  dtype?: 'float64' | 'int64' | 'bool';
  /** Not differentiated (indices, masks, constants fed as inputs). */
  fixed?: boolean;
}

export interface FdCase {
  inputs: Record<string, FdInput>;
  build: (g: GraphBuilder, x: Record<string, string>) => string;
  /** Declare input dims as symbols so the rules take their runtime-shape paths. */
  symbolic?: boolean;
  seed?: number;
}

function tensorOf(spec: FdInput, rng: Rng): HostTensor {
  const n = spec.shape.reduce((a, b) => a * b, 1);
  const values = spec.data ?? Array.from({ length: n }, () => rng.normal());
  if (values.length !== n) throw new Error(`fd-check: ${values.length} values for shape ${spec.shape}`);
  switch (spec.dtype ?? 'float64') {
    case 'int64':
      return { dtype: 'int64', shape: spec.shape, data: BigInt64Array.from(values.map((v) => BigInt(v))) };
    case 'bool':
      return { dtype: 'bool', shape: spec.shape, data: Uint8Array.from(values) };
    default:
      return { dtype: 'float64', shape: spec.shape, data: Float64Array.from(values) };
  }
}

function declare(g: GraphBuilder, c: FdCase): Record<string, string> {
  const names: Record<string, string> = {};
  for (const [name, spec] of Object.entries(c.inputs)) {
    const shape = c.symbolic ? spec.shape.map((_, i) => `${name}_d${i}`) : spec.shape;
    names[name] = g.input(name, spec.dtype ?? 'float64', shape);
  }
  return names;
}

export async function fdCheck(c: FdCase, tolerance = 1e-5): Promise<number> {
  const rng = new Rng(c.seed ?? 7);
  const feeds: Record<string, HostTensor> = {};
  for (const [name, spec] of Object.entries(c.inputs)) feeds[name] = tensorOf(spec, rng);

  // Forward once to learn y's shape, then the full graph with a cotangent of that shape.
  const fwd = new GraphBuilder('fd_forward');
  const yFwd = c.build(fwd, declare(fwd, c));
  const yInferred = new GraphInfo(fwd).shape(yFwd);
  if (!yInferred) throw new Error('fd-check: the rank of the output is unknown');
  fwd.output(yFwd, 'float64', yInferred.map((d, i) => d ?? `y_d${i}`), 'y');
  // float64 graphs: 'basic' optimisation, since onnxruntime's fusions (e.g. QuickGelu) are float32-only.
  const yShape = (await runSession(await createSession(serializeModel(fwd), { optimization: 'basic' }), feeds)).y.shape;

  const g = new GraphBuilder('fd_check');
  const x = declare(g, c);
  const y = c.build(g, x);
  const w = g.input('cotangent', 'float64', c.symbolic ? yShape.map((_, i) => `w_d${i}`) : yShape);
  const f = g.op1('ReduceSum', [g.op1('Mul', [y, w])], { keepdims: 0 });
  g.output(f, 'float64', [], 'f');
  const wrt = Object.keys(c.inputs).filter((k) => !c.inputs[k].fixed && (c.inputs[k].dtype ?? 'float64') === 'float64');
  const { grads } = gradients(g, { seeds: new Map([[y, w]]), wrt: wrt.map((k) => x[k]) });
  for (const k of wrt) g.output(grads.get(x[k])!, 'float64', c.inputs[k].shape, `grad_${k}`);
  const session = await createSession(serializeModel(g), { optimization: 'basic' });
  feeds.cotangent = tensorOf({ shape: yShape }, rng);
  const out = await runSession(session, feeds);

  const h = 1e-6;
  let worst = 0;
  for (const k of wrt) {
    const data = feeds[k].data as Float64Array;
    const ad = out[`grad_${k}`].data as Float64Array;
    assert.deepEqual(out[`grad_${k}`].shape, feeds[k].shape, `gradient of ${k} has the input's shape`);
    let diff2 = 0;
    let ref2 = 0;
    for (let i = 0; i < data.length; i++) {
      const orig = data[i];
      data[i] = orig + h;
      const fp = (await runSession(session, feeds, ['f'])).f.data[0] as number;
      data[i] = orig - h;
      const fm = (await runSession(session, feeds, ['f'])).f.data[0] as number;
      data[i] = orig;
      const fd = (fp - fm) / (2 * h);
      diff2 += (ad[i] - fd) ** 2;
      ref2 += fd ** 2;
    }
    const rel = Math.sqrt(diff2) / Math.max(Math.sqrt(ref2), 1e-12);
    assert.ok(rel <= tolerance, `gradient of ${k}: relative error ${rel.toExponential(2)} > ${tolerance}`);
    assert.ok(ref2 > 0, `gradient of ${k} is identically zero; the case tests nothing`);
    worst = Math.max(worst, rel);
  }
  return worst;
}
