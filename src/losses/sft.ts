import type { GraphBuilder } from '../onnx/builder.ts';

/**
 * SFT: token negative log-likelihood of the completion, −Σ_t mask[t] · log p(y_t | x, y_<t).
 * Returns the SUM over the batch's response tokens; the caller scales by 1/(tokens in the whole
 * batch), so micro-batches accumulate to the token mean.
 */
export function emitSftLoss(g: GraphBuilder, tokenLogps: string, responseMask: string): { lossSum: string; tokens: string } {
  const lossSum = g.op1('Neg', [g.op1('ReduceSum', [g.op1('Mul', [tokenLogps, responseMask])], { keepdims: 0 })]);
  return { lossSum, tokens: g.op1('ReduceSum', [responseMask], { keepdims: 0 }) };
}
