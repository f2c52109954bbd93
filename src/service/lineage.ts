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
export function roundVersions(round: number, method: RunConfig['method'], rejected: ReadonlySet<number> = new Set()): RoundVersions {
  if (!Number.isInteger(round) || round < 1) throw new Error(`round must be an integer ≥ 1, got ${round}`);
  const policy = lastPromoted(round, rejected);
  // π_ref(t−1): the policy's own parent (the version it was trained from), π_ref(0) for v0
  const scoringReference = policy === 0 ? REF0_VERSION : lastPromoted(policy, rejected);
  const trainingReference = method === 'offline-dpo' ? REF0_VERSION : policy;
  return { round, policy, scoringReference, trainingReference, produces: round };
}

/**
 * The policy round t starts from: v_{t−1}, or with a health gate the last version before it that was
 * not rejected (v0 always stands). Version numbers stay round numbers: round t produces v_t either way.
 */
export function lastPromoted(round: number, rejected: ReadonlySet<number>): number {
  let v = round - 1;
  while (v > 0 && rejected.has(v)) v--;
  return v;
}

/** The round that trains from `policy`: the one after it, past the versions the gate rejected since. */
export function roundFrom(policy: number, rejected: ReadonlySet<number>): number {
  let round = policy + 1;
  while (rejected.has(round)) round++;
  return round;
}

/**
 * How many policy versions `sampledBy` is behind `current`: the versions after it up to `current`
 * that a sampler could have used (rejected ones never were). 0: on-policy.
 */
export function versionsBehind(sampledBy: number, current: number, rejected: ReadonlySet<number>): number {
  let n = 0;
  for (let v = Math.max(0, sampledBy + 1); v <= current; v++) if (!rejected.has(v)) n++;
  return n;
}

/**
 * The versions that make a group of round `target` sampled by an older policy `sampledBy` (bounded
 * staleness, `dice serve`): sampled and scored as the round of `sampledBy` would — the reward is that
 * of the version that sampled it, (v, π_ref of v) — but tagged, and trained, in `target`.
 */
export function samplingVersions(target: number, sampledBy: number, method: RunConfig['method'], rejected: ReadonlySet<number>): RoundVersions {
  return { ...roundVersions(roundFrom(sampledBy, rejected), method, rejected), round: target };
}

/**
 * Whether samplers and scorers may use a checkpoint: without a health stage every one; with it, the
 * initial lineage (π_ref(0), v0) and versions the gate promoted (not yet decided, or rejected: no).
 */
export function isUsable(c: Pick<Checkpoint, 'version' | 'gate'>, gated: boolean): boolean {
  return !gated || c.version <= 0 || c.gate?.promoted === true;
}

/**
 * The config of round t: each version rejected since the last promoted one scales the learning rate
 * by gate.onReject.lrScale, and any rejection sets γ to gate.onReject.gamma (when given).
 */
export function gatedRoundConfig(config: RunConfig, versions: RoundVersions): RunConfig {
  const rejections = versions.round - 1 - versions.policy;
  if (rejections === 0) return config;
  const { lrScale, gamma } = config.gate.onReject;
  return { ...config, train: { ...config.train, lr: config.train.lr * lrScale ** rejections }, replay: { ...config.replay, gamma: gamma ?? config.replay.gamma } };
}

/** The versions the health gate rejected, from its records (health topic) or gated checkpoints. */
export function rejectedVersions(records: Iterable<{ version: number; promoted?: boolean; gate?: { promoted: boolean } }>): Set<number> {
  const out = new Set<number>();
  for (const r of records) if ((r.promoted ?? r.gate?.promoted) === false) out.add(r.version);
  return out;
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
