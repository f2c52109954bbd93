/**
 * The exact α* of paper Eq. 6:
 *
 *   α* = argmin_{α ≥ 0} | mean over groups of ( |y_w(α)| − |y_l(α)| ) |
 *
 * where y_w(α) / y_l(α) are the responses with the highest / lowest shaped reward r − α|y| (Eq. 5).
 * The paper searches α with Bayesian optimization (App. C); the objective is piecewise constant, so
 * we find its global minimum exactly. Each shaped reward is a line in α; per group the winner walks
 * the upper envelope (its length only shrinks as α grows) and the loser the lower envelope (its
 * length only grows), see envelope.ts. So D(α) = Σ_groups (|y_w| − |y_l|) is a non-increasing,
 * right-continuous step function: we collect every group's envelope breakpoints with the change of
 * D at each, sort them once (O(n log n) in the number of breakpoints) and sweep. At a breakpoint the
 * right-hand limit counts (shorter winner, longer loser); among equally good plateaus the one with
 * the smallest α wins, and α* is the left end (smallest α) of that optimal interval.
 */
import { firstLoser, firstWinner, loserAt, nextLoser, nextWinner, winnerAt } from './envelope.ts';

/** A window of scored groups in flat typed arrays: group g is [offsets[g], offsets[g+1]). */
export interface RewardGroups {
  rewards: Float64Array;
  lengths: Float64Array;
  offsets: Uint32Array;
}

export interface AlphaOptions {
  /** Only α in [0, maxAlpha] is considered (default: no bound). */
  maxAlpha?: number;
}

/** D(α)/G as a step function: meanDiffs[j] holds on [alphas[j], alphas[j+1]) (the last one to ∞ or maxAlpha). */
export interface AlphaLandscape {
  alphas: Float64Array;
  meanDiffs: Float64Array;
}

export interface AlphaSolution {
  /** α*: the smallest α of the optimal interval. */
  alpha: number;
  /** The optimal interval [alpha, alphaEnd); alphaEnd is the next breakpoint, maxAlpha, or Infinity. */
  alphaEnd: number;
  /** |mean(|y_w| − |y_l|)| at α* — the value of Eq. 6's objective. */
  objective: number;
  /** mean(|y_w| − |y_l|) at α = 0 (vanilla implicit rewards). */
  meanDiffBefore: number;
  /** mean(|y_w| − |y_l|) at α*. */
  meanDiffAfter: number;
  groups: number;
  /** The whole objective landscape (paper Fig. 4); the objective is |meanDiffs|. */
  landscape: AlphaLandscape;
}

/** Packs groups given as arrays into the flat form the solver takes, checking every value. */
export function packGroups(
  groups: ReadonlyArray<{ rewards: ArrayLike<number>; lengths: ArrayLike<number> }>,
): RewardGroups {
  let total = 0;
  groups.forEach((g, i) => {
    if (g.rewards.length !== g.lengths.length) {
      throw new Error(`packGroups: group ${i} has ${g.rewards.length} rewards but ${g.lengths.length} lengths`);
    }
    total += g.rewards.length;
  });
  const rewards = new Float64Array(total);
  const lengths = new Float64Array(total);
  const offsets = new Uint32Array(groups.length + 1);
  let at = 0;
  groups.forEach((g, i) => {
    for (let k = 0; k < g.rewards.length; k++, at++) {
      rewards[at] = g.rewards[k];
      lengths[at] = g.lengths[k];
    }
    offsets[i + 1] = at;
  });
  const packed = { rewards, lengths, offsets };
  validateGroups(packed);
  return packed;
}

/** Throws a clear error for a malformed window (the sweep itself assumes well-formed input). */
export function validateGroups({ rewards, lengths, offsets }: RewardGroups): void {
  if (rewards.length !== lengths.length) {
    throw new Error(`reward groups: ${rewards.length} rewards but ${lengths.length} lengths`);
  }
  if (offsets.length < 2) throw new Error('reward groups: no groups (offsets needs at least 2 entries)');
  if (offsets[0] !== 0 || offsets[offsets.length - 1] !== rewards.length) {
    throw new Error(`reward groups: offsets must run from 0 to ${rewards.length}, got ${offsets[0]}..${offsets[offsets.length - 1]}`);
  }
  for (let g = 0; g + 1 < offsets.length; g++) {
    if (offsets[g + 1] - offsets[g] < 2) {
      throw new Error(`reward groups: group ${g} has ${Math.max(0, offsets[g + 1] - offsets[g])} responses, a pair needs at least 2`);
    }
  }
  for (let i = 0; i < rewards.length; i++) {
    if (!Number.isFinite(rewards[i])) throw new Error(`reward groups: rewards[${i}] is ${rewards[i]}, expected a finite number`);
    if (!(lengths[i] >= 0 && lengths[i] < Infinity)) {
      throw new Error(`reward groups: lengths[${i}] is ${lengths[i]}, expected a finite length ≥ 0`);
    }
  }
}

/** Solves Eq. 6 exactly over a window of groups. */
export function solveAlpha(groups: RewardGroups, options: AlphaOptions = {}): AlphaSolution {
  validateGroups(groups);
  const maxAlpha = options.maxAlpha ?? Infinity;
  if (!(maxAlpha >= 0)) throw new Error(`solveAlpha: maxAlpha must be ≥ 0, got ${options.maxAlpha}`);
  const { rewards, lengths, offsets } = groups;
  const groupCount = offsets.length - 1;

  // Every hop moves a winner to a strictly shorter response or a loser to a strictly longer one,
  // so a group of k responses has at most 2(k − 1) breakpoints.
  const capacity = 2 * (rewards.length - groupCount);
  const eventAlpha = new Float64Array(capacity);
  const eventDelta = new Float64Array(capacity);
  let events = 0;
  let diffAtZero = 0;
  const hop = new Float64Array(1);

  for (let g = 0; g < groupCount; g++) {
    const start = offsets[g];
    const end = offsets[g + 1];
    let w = firstWinner(rewards, lengths, start, end);
    let l = firstLoser(rewards, lengths, start, end);
    diffAtZero += lengths[w] - lengths[l];
    for (let from = 0; ; ) {
      const next = nextWinner(rewards, lengths, start, end, w, from, hop);
      if (next < 0 || hop[0] > maxAlpha) break;
      eventAlpha[events] = hop[0];
      eventDelta[events++] = lengths[next] - lengths[w];
      w = next;
      from = hop[0];
    }
    for (let from = 0; ; ) {
      const next = nextLoser(rewards, lengths, start, end, l, from, hop);
      if (next < 0 || hop[0] > maxAlpha) break;
      eventAlpha[events] = hop[0];
      eventDelta[events++] = lengths[l] - lengths[next];
      l = next;
      from = hop[0];
    }
  }

  // Sort the breakpoints natively (no comparator), then drop each event's change of D into the
  // bucket of its distinct α found by binary search.
  const sorted = eventAlpha.subarray(0, events).slice().sort();
  const distinct = new Float64Array(events + 1);
  distinct[0] = 0;
  let points = 1;
  for (let i = 0; i < events; i++) {
    if (sorted[i] !== distinct[points - 1]) distinct[points++] = sorted[i];
  }
  const stepAt = new Float64Array(points);
  for (let i = 0; i < events; i++) stepAt[searchSorted(distinct, points, eventAlpha[i])] += eventDelta[i];

  const alphas = distinct.slice(0, points);
  const meanDiffs = new Float64Array(points);
  let diff = diffAtZero;
  let best = 0;
  for (let j = 0; j < points; j++) {
    diff += stepAt[j];
    meanDiffs[j] = diff / groupCount;
    if (Math.abs(meanDiffs[j]) < Math.abs(meanDiffs[best])) best = j;
  }
  return {
    alpha: alphas[best],
    alphaEnd: best + 1 < points ? alphas[best + 1] : maxAlpha,
    objective: Math.abs(meanDiffs[best]),
    meanDiffBefore: meanDiffs[0],
    meanDiffAfter: meanDiffs[best],
    groups: groupCount,
    landscape: { alphas, meanDiffs },
  };
}

/** mean(|y_w(α)| − |y_l(α)|) evaluated directly at one α (same tie rule as the sweep). */
export function meanLengthDiffAt(groups: RewardGroups, alpha: number): number {
  const { rewards, lengths, offsets } = groups;
  const groupCount = offsets.length - 1;
  let sum = 0;
  for (let g = 0; g < groupCount; g++) {
    const start = offsets[g];
    const end = offsets[g + 1];
    sum += lengths[winnerAt(rewards, lengths, start, end, alpha)] - lengths[loserAt(rewards, lengths, start, end, alpha)];
  }
  return sum / groupCount;
}

/** Index of `value` in the sorted distinct prefix `sorted[0..count)` (it is known to be there). */
function searchSorted(sorted: Float64Array, count: number, value: number): number {
  let lo = 0;
  let hi = count - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
