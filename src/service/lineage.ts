import type { RunConfig } from '../config/schema.ts';

/** The initial reference π_ref(0) (e.g. the SFT model the DPO base was tuned from). */
export const REF0_VERSION = -1;

export interface RoundVersions {
  round: number;
  /** π_θ(t−1): samples, start point of training. */
  policy: number;
  /** π_ref(t−1): the implicit reward's reference when scoring samples. */
  scoringReference: number;
  /** The DPO reference of this round's training. */
  trainingReference: number;
  /** The version this round produces. */
  produces: number;
}

/**
 * Which model plays which part in round t (paper Alg. 1):
 *   DICE: sample with v_{t−1}; score with (v_{t−1}, π_ref(t−1)) where π_ref(0) is the SFT reference
 *   and π_ref(t−1) = v_{t−2} after; train from v_{t−1} with reference v_{t−1}; produce v_t.
 *   offline DPO: reference fixed at π_ref(0). offline DPO w/ new ref: reference v_{t−1}.
 */
export function roundVersions(round: number, method: RunConfig['method']): RoundVersions {
  if (!Number.isInteger(round) || round < 1) throw new Error(`round must be an integer ≥ 1, got ${round}`);
  const policy = round - 1;
  const scoringReference = round === 1 ? REF0_VERSION : round - 2;
  const trainingReference = method === 'offline-dpo' ? REF0_VERSION : policy;
  return { round, policy, scoringReference, trainingReference, produces: round };
}
