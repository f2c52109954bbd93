import type { GraphBuilder } from '../onnx/builder.ts';
import type { ResponsePositions } from './response-positions.ts';

/**
 * Sequence log-probs from the log-probs of the response tokens: log π(y|x) = Σ_t mask[t] · log p(y_t | x, y_<t),
 * summed per row — the untempered sums the implicit reward uses. tokenLogps [R] are at `at.index`
 * (the positions where the mask is non-zero); the result is [N].
 */
export function emitSequenceLogps(g: GraphBuilder, tokenLogps: string, at: ResponsePositions): string {
  const perRow = g.op1('MatMul', [at.rowWeight, g.op1('Unsqueeze', [tokenLogps, g.int64([1])])]); // [N,1]
  return g.op1('Reshape', [perRow, g.int64([-1])]);
}
