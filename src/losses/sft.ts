import type { GraphBuilder } from '../onnx/builder.ts';
import type { ResponsePositions } from './response-positions.ts';

/**
 * SFT: token negative log-likelihood of the completion, −Σ_t mask[t] · log p(y_t | x, y_<t), over the
 * log-probs tokenLogps [R] of the response tokens (at `at.index`). Returns the SUM over the batch's
 * response tokens; the caller scales by 1/(tokens in the whole batch), so micro-batches accumulate to
 * the token mean.
 */
export function emitSftLoss(g: GraphBuilder, tokenLogps: string, at: ResponsePositions, responseMask: string): { lossSum: string; tokens: string } {
  const lossSum = g.op1('Neg', [g.op1('ReduceSum', [g.op1('Mul', [tokenLogps, at.weight])], { keepdims: 0 })]);
  return { lossSum, tokens: g.op1('ReduceSum', [responseMask], { keepdims: 0 }) };
}
