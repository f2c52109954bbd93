import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { alone } from '../../operators/engine-batches.ts';
import { score, scoreBatch, scoreKey, type ScoreOptions } from '../../operators/score.ts';
import { Scorer } from '../engine/scorer.ts';
import { engineOptions } from '../service/round-config.ts';
import { stageEvent, tooStale, type RecordStage, type RoundContext } from './stage.ts';

/**
 * Alg. 1 line 4 (first half) — samples → scored: the reference π_ref(t−1)'s log-probs of every
 * response and the implicit reward r = β(log π_θ(t−1) − log π_ref(t−1)) (Eq. 4,
 * src/dice/reward.ts:implicitReward) from the sampler's recorded log-probs, with the (policy,
 * reference) of the version that sampled the group. Strictly on-policy up to `serve.maxStaleness`:
 * a group sampled by a policy more versions behind is dropped and counted. One group per reference pass (see
 * the sample stage).
 */
export const scoreStage: RecordStage<SamplesGroup, ScoredGroup, Scorer, 'score/group' | 'score/stale-dropped'> = {
  kind: 'per-record',
  name: 'score',
  input: { topic: 'samples', contract: samplesTopic, key: (g) => g.promptId },
  output: { topic: 'scored', contract: scoredTopic, key: (g) => g.promptId },
  emits: ['score/group', 'score/stale-dropped'],
  inFlightKey: scoreKey,
  answers: scoreKey,
  roundOf: (g) => g.round,
  doneMessage: 'scored',
  grouping: () => alone(),
  inRound: (g, ctx) => g.round === ctx.versions.round,
  isStale: (g, behind, config) => tooStale(config, behind(g.policyVersion)),
  madeBy: (g) => g.policyVersion,
  engineVersion: (v) => v.scoringReference,
  openEngine: (modelDir, config) => Scorer.open({ modelDir, ...engineOptions(config) }),
  operator: (reference, ctx) => score({ ...scoreOptions(reference, ctx), chunkOf: scoreStage.grouping(ctx) }),
  call: (groups, reference, ctx) => scoreBatch(groups, scoreOptions(reference, ctx)),
  projection: () => (g, { lag }) => {
    const rewards = g.responses.map((r) => r.reward);
    return stageEvent('score/group', {
      promptId: g.promptId,
      policyVersion: g.policyVersion,
      meanReward: rewards.reduce((a, b) => a + b, 0) / rewards.length,
      rewardSpread: Math.max(...rewards) - Math.min(...rewards),
      lag,
    });
  },
  staleEvent: (g) => ({ event: stageEvent('score/stale-dropped', { promptId: g.promptId, policyVersion: g.policyVersion }), round: g.round }),
};

function scoreOptions(reference: Scorer, ctx: RoundContext): ScoreOptions {
  return { reference, referenceVersion: ctx.versions.scoringReference, beta: ctx.config.reward.beta };
}
