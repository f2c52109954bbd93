/**
 * DPO implicit rewards (paper Eq. 4) and their length-regularized shaping (Eq. 5).
 *
 *   r(x, y)        = β · (log π_θ(y|x) − log π_ref(y|x))          (Eq. 4)
 *   r_LR(x, y; α)  = r(x, y) − α · |y|                              (Eq. 5)
 *
 * Log-probs are sequence log-probs summed over the response tokens (EOS included), untempered.
 * |y| is the response's string length in characters by default (the paper and its official code use
 * Python's `len(str)`, which counts code points — so do we, not UTF-16 units); tokens are an option.
 */

export type LengthUnit = 'chars' | 'tokens';

/** What a response length can be measured from. `tokenCount` wins over `tokenIds` when both are set. */
export interface LengthSource {
  text: string;
  tokenIds?: ArrayLike<number>;
  tokenCount?: number;
}

/** Implicit reward of one response, Eq. 4. */
export function implicitReward(policyLogProb: number, refLogProb: number, beta: number): number {
  return beta * (policyLogProb - refLogProb);
}

/** Implicit rewards of many responses, Eq. 4, with the inputs checked (a NaN reward would silently corrupt α*). */
export function implicitRewards(
  policyLogProbs: ArrayLike<number>,
  refLogProbs: ArrayLike<number>,
  beta: number,
): Float64Array {
  if (!Number.isFinite(beta) || beta <= 0) throw new Error(`implicitRewards: beta must be a positive number, got ${beta}`);
  if (policyLogProbs.length !== refLogProbs.length) {
    throw new Error(
      `implicitRewards: policyLogProbs has ${policyLogProbs.length} entries but refLogProbs has ${refLogProbs.length}`,
    );
  }
  const out = new Float64Array(policyLogProbs.length);
  for (let i = 0; i < out.length; i++) {
    const p = policyLogProbs[i];
    const q = refLogProbs[i];
    if (!Number.isFinite(p)) throw new Error(`implicitRewards: policyLogProbs[${i}] is ${p}, expected a finite log-prob`);
    if (!Number.isFinite(q)) throw new Error(`implicitRewards: refLogProbs[${i}] is ${q}, expected a finite log-prob`);
    out[i] = beta * (p - q);
  }
  return out;
}

/** Length-regularized (shaped) reward, Eq. 5. */
export function shapedReward(reward: number, length: number, alpha: number): number {
  return reward - alpha * length;
}

/** Number of Unicode code points in `text` (what Python's `len` returns, used by the paper for |y|). */
export function charLength(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // A low surrogate that follows a high surrogate belongs to the same code point.
    if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
      const prev = text.charCodeAt(i - 1);
      if (prev >= 0xd800 && prev <= 0xdbff) continue;
    }
    n++;
  }
  return n;
}

/** |y| of Eq. 5 in the chosen unit. */
export function responseLength(response: LengthSource, unit: LengthUnit = 'chars'): number {
  if (unit === 'chars') return charLength(response.text);
  if (response.tokenCount !== undefined) return response.tokenCount;
  if (response.tokenIds !== undefined) return response.tokenIds.length;
  throw new Error(`responseLength: unit 'tokens' needs tokenCount or tokenIds on the response (text: ${JSON.stringify(response.text.slice(0, 40))})`);
}
