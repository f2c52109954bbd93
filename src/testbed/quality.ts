/**
 * Ground-truth quality Q(x, y) ∈ [0, 1] of a free-text response. Only the claimed answers count:
 * every "the answer is X" in the response (case-insensitive marker) is a claim, and
 *   Q = min over claims of similarity(claim, correct answer),   Q = 0 without a claim,
 * so filler never adds quality and hedging between answers never pays. Similarity:
 *   words (reverse, upper, lookup):  max(0, 1 − 2·editDistance / max(|claim|, |answer|))  (case-sensitive)
 *   numbers (count, add):            0.5^|claim − answer|, 0 for a non-number
 * A right answer scores 1, a near miss (one typo in a 5-letter word, off by one) about 0.5–0.7,
 * a wrong one 0 or close to it.
 */
import type { ArenaTask } from './tasks.ts';
import { editDistance } from './text.ts';

const CLAIM = /answer is\s+([A-Za-z0-9]+)/gi;

/** The answers a response claims, in order. */
export function extractClaims(response: string): string[] {
  return [...response.matchAll(CLAIM)].map((m) => m[1]);
}

/** How close one claimed answer is to the correct one, in [0, 1]. */
export function answerSimilarity(task: ArenaTask, claim: string): number {
  if (task.family === 'count' || task.family === 'add') {
    if (!/^\d+$/.test(claim)) return 0;
    return 0.5 ** Math.abs(Number(claim) - Number(task.answer));
  }
  const longest = Math.max(claim.length, task.answer.length);
  return Math.max(0, 1 - (2 * editDistance(claim, task.answer)) / longest);
}

/** Q(x, y). */
export function quality(task: ArenaTask, response: string): number {
  const claims = extractClaims(response);
  if (claims.length === 0) return 0;
  let q = 1;
  for (const c of claims) q = Math.min(q, answerSimilarity(task, c));
  return q;
}
