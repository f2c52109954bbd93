import type { GraphBuilder } from '../onnx/builder.ts';

/**
 * Sequence log-probs from per-token log-probs: log π(y|x) = Σ_t mask[t] · log p(ids[t+1] | ids[≤t]),
 * where mask [B,T−1] is 1 on the positions that predict a response token (EOS included) and 0 on the
 * prompt and padding — the untempered sums the implicit reward uses.
 */
export function emitSequenceLogps(g: GraphBuilder, tokenLogps: string, responseMask: string): string {
  return g.op1('ReduceSum', [g.op1('Mul', [tokenLogps, responseMask]), g.int64([1])], { keepdims: 0 });
}
