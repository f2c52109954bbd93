import type { GraphBuilder } from '../onnx/builder.ts';
import { Emitter, scalarTensor } from './emitter.ts';
import { FLOAT_DTYPES, GraphInfo } from './graph-info.ts';
import { VJP_RULES, fusableLogSoftmax, labelLogProbsVjp } from './vjp-rules.ts';

/**
 * Reverse-mode autodiff over a GraphBuilder graph: appends the gradient of `loss` with respect to
 * each value in `wrt` as ordinary ONNX nodes of the same graph, and returns their names.
 *
 * Nodes are visited in reverse of the order they were added (the builder adds a node only after its
 * inputs exist, so that order is topological). Only values on a path from `wrt` to the outputs
 * get gradients; a value used several times gets the Sum of its contributions.
 */
export interface GradientRequest {
  /** Scalar (or any-shaped) value to differentiate; its gradient is seeded with ones. */
  loss?: string;
  /** Or: explicit output gradients (value → the name of its cotangent), e.g. for testing a VJP. */
  seeds?: Map<string, string>;
  wrt: string[];
}

export interface GradientResult {
  /** wrt value → name of its gradient value (zeros when the value does not reach the loss). */
  grads: Map<string, string>;
  /** wrt values that do not reach the loss at all. */
  unused: string[];
}

export function gradients(g: GraphBuilder, request: GradientRequest): GradientResult {
  const info = new GraphInfo(g);
  const e = new Emitter(g, info);
  const forward = [...g.nodes];

  const seeds = new Map(request.seeds ?? []);
  if (request.loss) {
    const ones = e.op('ConstantOfShape', [e.shapeValue(request.loss)], { value: scalarTensor(1, info.dtype(request.loss) ?? 'float32', [1]) });
    seeds.set(request.loss, ones);
  }
  if (seeds.size === 0) throw new Error('autodiff: give a loss or seeds to differentiate');

  // Values that depend on a wrt value through float ops (ints, bools and shapes carry no gradient).
  const dependsOnWrt = new Set(request.wrt);
  for (const node of forward) {
    if (!node.inputs.some((i) => dependsOnWrt.has(i))) continue;
    for (const o of node.outputs) {
      const dt = info.dtype(o);
      if (o && (dt === undefined || FLOAT_DTYPES.has(dt))) dependsOnWrt.add(o);
    }
  }
  // Of those, the ones the seeded outputs depend on.
  const reachesLoss = new Set<string>([...seeds.keys()].filter((v) => dependsOnWrt.has(v)));
  for (let n = forward.length - 1; n >= 0; n--) {
    const node = forward[n];
    if (!node.outputs.some((o) => reachesLoss.has(o))) continue;
    for (const i of node.inputs) if (dependsOnWrt.has(i)) reachesLoss.add(i);
  }

  const contributions = new Map<string, string[]>();
  const contribute = (v: string, grad: string) => {
    const list = contributions.get(v);
    if (list) list.push(grad);
    else contributions.set(v, [grad]);
  };
  const total = (v: string): string | undefined => {
    const list = contributions.get(v);
    if (!list) return undefined;
    if (list.length > 1) contributions.set(v, [e.op('Sum', list)]);
    return contributions.get(v)![0];
  };
  for (const [v, grad] of seeds) if (reachesLoss.has(v)) contribute(v, grad);
  const readerCount = new Map<string, number>();
  for (const node of forward) for (const i of node.inputs) readerCount.set(i, (readerCount.get(i) ?? 0) + 1);
  const readers = (v: string) => (readerCount.get(v) ?? 0) + (seeds.has(v) ? 1 : 0);

  for (let n = forward.length - 1; n >= 0; n--) {
    const node = forward[n];
    const needs = (k: number) => reachesLoss.has(node.inputs[k]);
    if (!node.inputs.some((_, k) => needs(k))) continue;
    const dy = node.outputs.map((o) => (reachesLoss.has(o) ? total(o) : undefined));
    if (dy.every((d) => d === undefined)) continue;
    const logSoftmax = fusableLogSoftmax(e, node, readers);
    if (logSoftmax && dy[0] && reachesLoss.has(logSoftmax.inputs[0])) {
      // LogSoftmax → GatherElements as one op; the LogSoftmax then receives no gradient and is passed over
      contribute(logSoftmax.inputs[0], labelLogProbsVjp(e, logSoftmax, node, dy[0]));
      continue;
    }
    const rule = VJP_RULES[node.opType];
    if (!rule) throw new Error(`autodiff: no gradient rule for op ${node.opType} (node ${node.name}); add one to src/autodiff/vjp-rules.ts`);
    const take = (k: number) => {
      const t = total(node.inputs[k]);
      contributions.delete(node.inputs[k]);
      return t;
    };
    const dx = rule({ e, node, dy, needs, take });
    node.inputs.forEach((input, k) => {
      if (!needs(k)) return;
      const grad = dx[k];
      if (!grad) throw new Error(`autodiff: rule ${node.opType} gave no gradient for input ${k} ('${input}') of ${node.name}`);
      contribute(input, grad);
    });
  }

  const grads = new Map<string, string>();
  const unused: string[] = [];
  for (const w of request.wrt) {
    const grad = total(w);
    if (grad) grads.set(w, grad);
    else {
      unused.push(w);
      grads.set(w, e.zerosLike(w));
    }
  }
  return { grads, unused };
}
