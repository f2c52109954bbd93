/**
 * Which response of a group wins and which loses under the shaped reward r_i − α·|y_i| (Eq. 5), as a
 * function of α ≥ 0. Each shaped reward is a line in α with slope −|y_i|, so the winner follows the
 * upper envelope of the lines and the loser the lower one. Walking an envelope from α = 0 visits its
 * breakpoints in increasing α; alpha.ts sweeps them for the exact α* and pairs.ts asks which line is
 * on each envelope at a given α. Both go through the functions below, so the pair emitted at α* is
 * exactly the pair the α* objective counted — even when breakpoints of different groups coincide
 * mathematically but differ in the last bit.
 *
 * Tie rule (right-hand limit): at a breakpoint, where several lines share the top (bottom) value, the
 * winner (loser) is the line that stays on top (bottom) just to the right of it — the shortest winner,
 * the longest loser. Equal lines (same reward and length) fall back to the lowest index for the
 * winner and the highest index for the loser, so a group of ≥ 2 responses never pairs a response
 * with itself.
 *
 * A group is the half-open slice [start, end) of the parallel arrays `rewards` and `lengths`.
 */

/** The winner at α = 0⁺: highest reward, then shortest, then lowest index. */
export function firstWinner(rewards: ArrayLike<number>, lengths: ArrayLike<number>, start: number, end: number): number {
  let best = start;
  for (let j = start + 1; j < end; j++) {
    const r = rewards[j];
    const rb = rewards[best];
    if (r > rb || (r === rb && lengths[j] < lengths[best])) best = j;
  }
  return best;
}

/** The loser at α = 0⁺: lowest reward, then longest, then highest index. */
export function firstLoser(rewards: ArrayLike<number>, lengths: ArrayLike<number>, start: number, end: number): number {
  let best = start;
  for (let j = start + 1; j < end; j++) {
    const r = rewards[j];
    const rb = rewards[best];
    if (r < rb || (r === rb && lengths[j] >= lengths[best])) best = j;
  }
  return best;
}

/**
 * The next winner along the upper envelope after `current`, which wins from `fromAlpha` on: among the
 * shorter responses, the one whose line crosses `current`'s first (ties: shortest, then lowest index).
 * Returns its index and writes the crossing α to `alphaOut[0]`, or returns −1 when `current` wins for
 * every larger α. Crossings are clamped to `fromAlpha` so rounding never moves the walk backwards.
 */
export function nextWinner(
  rewards: ArrayLike<number>,
  lengths: ArrayLike<number>,
  start: number,
  end: number,
  current: number,
  fromAlpha: number,
  alphaOut: Float64Array,
): number {
  const rc = rewards[current];
  const lc = lengths[current];
  let best = -1;
  let bestAlpha = Infinity;
  for (let j = start; j < end; j++) {
    const lj = lengths[j];
    if (lj >= lc) continue;
    let a = (rc - rewards[j]) / (lc - lj);
    if (!(a < Infinity)) continue;
    if (a < fromAlpha) a = fromAlpha;
    if (a < bestAlpha || (a === bestAlpha && lj < lengths[best])) {
      best = j;
      bestAlpha = a;
    }
  }
  alphaOut[0] = bestAlpha;
  return best;
}

/** Mirror of `nextWinner` for the lower envelope: among longer responses, the first to cross from above (ties: longest, then highest index). */
export function nextLoser(
  rewards: ArrayLike<number>,
  lengths: ArrayLike<number>,
  start: number,
  end: number,
  current: number,
  fromAlpha: number,
  alphaOut: Float64Array,
): number {
  const rc = rewards[current];
  const lc = lengths[current];
  let best = -1;
  let bestAlpha = Infinity;
  for (let j = start; j < end; j++) {
    const lj = lengths[j];
    if (lj <= lc) continue;
    let a = (rewards[j] - rc) / (lj - lc);
    if (!(a < Infinity)) continue;
    if (a < fromAlpha) a = fromAlpha;
    if (a < bestAlpha || (a === bestAlpha && lj >= lengths[best])) {
      best = j;
      bestAlpha = a;
    }
  }
  alphaOut[0] = bestAlpha;
  return best;
}

const scratch = new Float64Array(1);

/** Index of the winner at `alpha` under the right-hand-limit tie rule (walks the same breakpoints as the α* sweep). */
export function winnerAt(
  rewards: ArrayLike<number>,
  lengths: ArrayLike<number>,
  start: number,
  end: number,
  alpha: number,
): number {
  let current = firstWinner(rewards, lengths, start, end);
  let from = 0;
  for (;;) {
    const next = nextWinner(rewards, lengths, start, end, current, from, scratch);
    if (next < 0 || scratch[0] > alpha) return current;
    current = next;
    from = scratch[0];
  }
}

/** Index of the loser at `alpha` under the right-hand-limit tie rule. */
export function loserAt(
  rewards: ArrayLike<number>,
  lengths: ArrayLike<number>,
  start: number,
  end: number,
  alpha: number,
): number {
  let current = firstLoser(rewards, lengths, start, end);
  let from = 0;
  for (;;) {
    const next = nextLoser(rewards, lengths, start, end, current, from, scratch);
    if (next < 0 || scratch[0] > alpha) return current;
    current = next;
    from = scratch[0];
  }
}
