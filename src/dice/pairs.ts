/**
 * Preference pairs from scored groups (paper §4.1, Alg. 1 line 4): in each group the response with
 * the highest shaped reward r − α|y| (Eq. 5) is chosen (y_w) and the one with the lowest is rejected
 * (y_l). Ties follow the same right-hand-limit rule as the α* sweep (envelope.ts), so the pairs built
 * at α* have exactly the mean length difference that alpha.ts reported.
 *
 * Also the length-difference statistics of a window before (α = 0) and after shaping, and a
 * histogram helper for paper Fig. 2.
 */
import type { RewardGroups } from './alpha.ts';
import { loserAt, winnerAt } from './envelope.ts';
import { shapedReward } from './reward.ts';

export interface PairChoice {
  /** Indices into the group's responses. */
  chosen: number;
  rejected: number;
  /** Shaped rewards r − α|y| of the two. */
  chosenShaped: number;
  rejectedShaped: number;
  /** |y_w| − |y_l|. */
  lengthDiff: number;
}

/** The best/worst pair of one group (≥ 2 responses) under the shaped reward at `alpha` ≥ 0. */
export function selectPair(rewards: ArrayLike<number>, lengths: ArrayLike<number>, alpha: number): PairChoice {
  if (rewards.length !== lengths.length) {
    throw new Error(`selectPair: ${rewards.length} rewards but ${lengths.length} lengths`);
  }
  if (rewards.length < 2) throw new Error(`selectPair: a group needs at least 2 responses, got ${rewards.length}`);
  if (!(alpha >= 0 && alpha < Infinity)) throw new Error(`selectPair: alpha must be a finite number ≥ 0, got ${alpha}`);
  const chosen = winnerAt(rewards, lengths, 0, rewards.length, alpha);
  const rejected = loserAt(rewards, lengths, 0, rewards.length, alpha);
  return {
    chosen,
    rejected,
    chosenShaped: shapedReward(rewards[chosen], lengths[chosen], alpha),
    rejectedShaped: shapedReward(rewards[rejected], lengths[rejected], alpha),
    lengthDiff: lengths[chosen] - lengths[rejected],
  };
}

/** Chosen and rejected indices (into the flat arrays) of every group of a window at `alpha`. */
export function selectPairs(groups: RewardGroups, alpha: number): { chosen: Uint32Array; rejected: Uint32Array } {
  const { rewards, lengths, offsets } = groups;
  const count = offsets.length - 1;
  const chosen = new Uint32Array(count);
  const rejected = new Uint32Array(count);
  for (let g = 0; g < count; g++) {
    chosen[g] = winnerAt(rewards, lengths, offsets[g], offsets[g + 1], alpha);
    rejected[g] = loserAt(rewards, lengths, offsets[g], offsets[g + 1], alpha);
  }
  return { chosen, rejected };
}

/** Per-group |y_w| − |y_l| at `alpha`. */
export function lengthDiffs(groups: RewardGroups, alpha: number): Float64Array {
  const { chosen, rejected } = selectPairs(groups, alpha);
  const out = new Float64Array(chosen.length);
  for (let g = 0; g < out.length; g++) out[g] = groups.lengths[chosen[g]] - groups.lengths[rejected[g]];
  return out;
}

export interface SummaryStats {
  count: number;
  mean: number;
  std: number;
  min: number;
  median: number;
  max: number;
}

export function summarize(values: ArrayLike<number>): SummaryStats {
  const n = values.length;
  if (n === 0) return { count: 0, mean: NaN, std: NaN, min: NaN, median: NaN, max: NaN };
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i];
  const mean = sum / n;
  let sq = 0;
  for (let i = 0; i < n; i++) sq += (values[i] - mean) ** 2;
  const sorted = Float64Array.from(values).sort();
  const median = n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  return { count: n, mean, std: Math.sqrt(sq / n), min: sorted[0], median, max: sorted[n - 1] };
}

export interface WindowLengthStats {
  alpha: number;
  before: { diffs: Float64Array; stats: SummaryStats };
  after: { diffs: Float64Array; stats: SummaryStats };
}

/** Length differences of a window's pairs with vanilla implicit rewards (α = 0) and with shaping at `alpha` (paper Fig. 2, top). */
export function windowLengthStats(groups: RewardGroups, alpha: number): WindowLengthStats {
  const before = lengthDiffs(groups, 0);
  const after = alpha === 0 ? before : lengthDiffs(groups, alpha);
  return { alpha, before: { diffs: before, stats: summarize(before) }, after: { diffs: after, stats: summarize(after) } };
}

export interface Histogram {
  /** bins + 1 edges; bin i is [edges[i], edges[i+1]), the last bin also holds values equal to its upper edge. */
  edges: Float64Array;
  counts: Uint32Array;
  /** Values below the first / above the last edge (only when min/max were given). */
  underflow: number;
  overflow: number;
}

/** Equal-width histogram. The range defaults to the data's min..max. */
export function histogram(values: ArrayLike<number>, options: { bins?: number; min?: number; max?: number } = {}): Histogram {
  const bins = options.bins ?? 30;
  if (!(Number.isInteger(bins) && bins >= 1)) throw new Error(`histogram: bins must be a positive integer, got ${options.bins}`);
  let lo = options.min ?? Infinity;
  let hi = options.max ?? -Infinity;
  if (options.min === undefined || options.max === undefined) {
    for (let i = 0; i < values.length; i++) {
      if (options.min === undefined) lo = Math.min(lo, values[i]);
      if (options.max === undefined) hi = Math.max(hi, values[i]);
    }
  }
  if (values.length === 0 && !(lo < Infinity && hi > -Infinity)) {
    lo = 0;
    hi = 1;
  }
  if (lo === hi) {
    lo -= 0.5;
    hi += 0.5;
  }
  if (!(lo < hi)) throw new Error(`histogram: min (${lo}) must be below max (${hi})`);
  const width = (hi - lo) / bins;
  const edges = new Float64Array(bins + 1);
  for (let i = 0; i <= bins; i++) edges[i] = lo + i * width;
  edges[bins] = hi;
  const counts = new Uint32Array(bins);
  let underflow = 0;
  let overflow = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lo) underflow++;
    else if (v > hi) overflow++;
    else counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  }
  return { edges, counts, underflow, overflow };
}
