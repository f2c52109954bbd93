import { filter, type OperatorFunction } from 'rxjs';
import type { SamplesGroup } from '../topics/samples.ts';
import type { ScoredGroup } from '../topics/scored.ts';
import { implicitReward } from '../src/dice/reward.ts';
import { alone, answerInBatches, type BatchOf } from './engine-batches.ts';
import type { ScorerPort } from './ports.ts';

export interface ScoreOptions {
  /** Scores responses under the reference π_ref(t−1). */
  reference: ScorerPort;
  referenceVersion: number;
  /** β of the implicit reward (paper Eq. 4). */
  beta: number;
  /**
   * Strictly on-policy: groups sampled by another policy version than this are dropped and
   * counted through `onStale` (e.g. samples left over from before a checkpoint switch).
   */
  expectedPolicyVersion?: number;
  onStale?: (group: SamplesGroup) => void;
  /** The reference pass of each group, by `${promptId}@${policyVersion}` (default: each group alone; see sample's chunkOf). */
  chunkOf?: BatchOf<SamplesGroup>;
}

/**
 * samples → scored: reference log-probs of every response (teacher-forced, one batched pass) and
 * implicit rewards r = β·(log π_θ(t−1) − log π_ref(t−1)); the policy side is the log-prob the
 * sampler recorded, so no second policy pass is made.
 *
 *   g1(v1)-g2(v0)-g3(v1)-|  score(expected v1)  --s1---s3-|   (g2 stale: dropped, counted)
 */
export function score(options: ScoreOptions): OperatorFunction<SamplesGroup, ScoredGroup> {
  return (groups$) =>
    groups$.pipe(
      filter((g) => {
        const fresh = options.expectedPolicyVersion === undefined || g.policyVersion === options.expectedPolicyVersion;
        if (!fresh) options.onStale?.(g);
        return fresh;
      }),
      answerInBatches(scoreKey, options.chunkOf ?? alone(), (groups) => scoreBatch(groups, options)),
    );
}

/** A samples group's key in flight: a prompt may come back under a newer policy (dice serve). */
export function scoreKey(g: SamplesGroup): string {
  return `${g.promptId}@${g.policyVersion}`;
}

/** One reference pass over the responses of several groups; rewards from the recorded policy log-probs. */
export async function scoreBatch(
  groups: SamplesGroup[],
  options: Pick<ScoreOptions, 'reference' | 'referenceVersion' | 'beta'>,
): Promise<ScoredGroup[]> {
  const { reference, referenceVersion, beta } = options;
  const items = groups.flatMap((g) => g.responses.map((r) => ({ promptTokenIds: Array.from(g.promptTokenIds), responseTokenIds: Array.from(r.tokenIds) })));
  const outputs = await reference.score(items);
  let i = 0;
  return groups.map(
    (g): ScoredGroup => ({
      ...g,
      referenceVersion,
      beta,
      responses: g.responses.map((r) => {
        const refLogp = outputs[i++].logProb;
        return { ...r, refLogp, reward: implicitReward(r.policyLogp, refLogp, beta) };
      }),
    }),
  );
}
