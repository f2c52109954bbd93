import { join, resolve } from 'node:path';
import type { Bus } from '../../topics/bus.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import type { RunConfig } from '../config/schema.ts';
import { sha256File, weightsFileOf } from '../model/checkpoint.ts';
import { readWholeTopic } from './stage-runner.ts';

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

/**
 * Puts the start of the lineage on the checkpoints topic, once: π_ref(0) as version −1 and the DPO
 * base π_θ(0) as v0 (trained against it), so every process of a run (and a replay) can find them.
 */
export async function publishInitialLineage(bus: Bus, checkpointsTopicName: string, policyDir: string, refDir: string): Promise<Map<number, Checkpoint>> {
  const published = new Map((await readWholeTopic(bus, checkpointsTopicName, checkpointsTopic)).map((c) => [c.version, c]));
  const initial: Checkpoint[] = [
    { version: REF0_VERSION, parentVersion: null, referenceVersion: null, round: 0, location: resolve(refDir), sha256: sha256File(join(refDir, weightsFileOf(refDir))), metrics: {}, createdAt: 0 },
    { version: 0, parentVersion: null, referenceVersion: REF0_VERSION, round: 0, location: resolve(policyDir), sha256: sha256File(join(policyDir, weightsFileOf(policyDir))), metrics: {}, createdAt: 0 },
  ];
  const missing = initial.filter((c) => !published.has(c.version));
  for (const c of initial) {
    const known = published.get(c.version);
    if (known && known.sha256 !== c.sha256) {
      throw new Error(`${c.location}: its weights (sha256 ${c.sha256.slice(0, 12)}…) differ from version ${c.version} of this run (${known.sha256.slice(0, 12)}…, ${known.location}): use a new --out/--namespace for a different model`);
    }
  }
  if (missing.length > 0) await bus.produce(checkpointsTopicName, missing.map((c) => ({ key: String(c.version), value: checkpointsTopic.encode(c) })));
  for (const c of missing) published.set(c.version, c);
  return published;
}
