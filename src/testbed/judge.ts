/**
 * The arena's simulated judge, length-biased like AlpacaEval's GPT-4 annotator: it prefers higher
 * quality and, wrongly, longer answers,
 *   P(a ≻ b | x) = σ( wQuality·(Q(x,a) − Q(x,b)) + wLength·(|a| − |b|) / lengthScale ),
 * with |·| in characters. Labels are drawn from that probability with a seeded Rng. Q is the testbed's:
 * the arena's answer check by default, the fraction of followed instructions for IFEval tasks.
 */
import { charLength } from '../dice/reward.ts';
import type { Rng } from '../util/random.ts';
import { quality } from './quality.ts';
import type { ArenaTask } from './tasks.ts';

export interface JudgeOptions {
  wQuality: number;
  wLength: number;
  /** Characters of length difference that count as much as wLength in the logit. */
  lengthScale: number;
}

/** A full-filler response (~+30 chars) is worth +1.5 logits; a right vs wrong answer 5. */
export const DEFAULT_JUDGE: JudgeOptions = { wQuality: 5, wLength: 1, lengthScale: 20 };

export function sigmoid(z: number): number {
  return z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z));
}

/** P(a ≻ b) from precomputed qualities and lengths. */
export function judgeProbabilityFrom(qa: number, qb: number, lenA: number, lenB: number, judge: JudgeOptions = DEFAULT_JUDGE): number {
  return sigmoid(judge.wQuality * (qa - qb) + (judge.wLength * (lenA - lenB)) / judge.lengthScale);
}

/** Ground-truth quality Q(x, y) ∈ [0, 1] of a testbed's tasks (the arena's answer check, IFEval's constraints…). */
export type QualityFn<T> = (task: T, response: string) => number;

/** P(a ≻ b | task), Q from the testbed's quality function (default: the arena's). */
export function judgeProbability<T = ArenaTask>(task: T, a: string, b: string, judge: JudgeOptions = DEFAULT_JUDGE, q: QualityFn<T> = quality as unknown as QualityFn<T>): number {
  return judgeProbabilityFrom(q(task, a), q(task, b), charLength(a), charLength(b), judge);
}

/** One stochastic label: whether a is preferred, and the probability it was drawn with. */
export function judgeLabel<T = ArenaTask>(task: T, a: string, b: string, rng: Rng, judge: JudgeOptions = DEFAULT_JUDGE, q?: QualityFn<T>): { aWins: boolean; pA: number } {
  const pA = judgeProbability(task, a, b, judge, q);
  return { aWins: rng.next() < pA, pA };
}
