/**
 * The held-out slice of D_offline (the health stage's generalisation signal): `count` pairs chosen
 * by the smallest seeded hashes of their pairIds, so the choice depends on the run seed and the
 * pair set, never on file order or on which process reads it. They are never replayed.
 */
import { deriveSeed } from '../util/random.ts';

export interface HeldOutSplit<P> {
  /** In their hash order (the first ones also give the probe prompts). */
  heldOut: P[];
  /** The rest, in their original order (what the replay stage may draw from). */
  replayable: readonly P[];
}

export function splitHeldOut<P extends { pairId: string }>(pairs: readonly P[], count: number, seed: number): HeldOutSplit<P> {
  if (count === 0) return { heldOut: [], replayable: pairs };
  if (count >= pairs.length) {
    throw new Error(`health.heldOutPairs is ${count} but D_offline has ${pairs.length} pairs: leave some to replay (or give more offline pairs)`);
  }
  const ranked = pairs.map((p) => ({ p, h: deriveSeed(seed, 'held-out', p.pairId) })).sort((a, b) => a.h - b.h || (a.p.pairId < b.p.pairId ? -1 : a.p.pairId > b.p.pairId ? 1 : 0));
  const heldOut = ranked.slice(0, count).map((r) => r.p);
  const ids = new Set(heldOut.map((p) => p.pairId));
  return { heldOut, replayable: pairs.filter((p) => !ids.has(p.pairId)) };
}
