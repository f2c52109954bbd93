import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { promptChunks, sample, sampleBatch, type SampleOptions } from '../../operators/sample.ts';
import { Sampler } from '../engine/sampler.ts';
import { engineOptions, generateParams } from '../service/round-config.ts';
import { stageEvent, usesChatTemplate, type RecordStage, type RoundContext } from './stage.ts';

/**
 * Alg. 1 line 3 — prompts → samples: K responses per prompt from π_θ(t−1), each with its untempered
 * log-prob (operators/sample.ts; seeds deriveSeed(run seed, prompt, version), src/util/random.ts).
 * With bounded staleness (`dice serve`, serve.maxStaleness = s) a group of round t may come from a
 * policy up to s versions older: it records that version (policyVersion) and its round (round).
 * Engine batches: fixed chunks of the round's prompt order, each sampled whole when its first
 * member arrives, so results repeat bit for bit whatever the arrival order or restarts.
 */
export const sampleStage: RecordStage<PromptRecord, SamplesGroup, Sampler, 'sample/group'> = {
  kind: 'per-record',
  name: 'sample',
  input: { topic: 'prompts', contract: promptsTopic, key: (p) => p.promptId },
  output: { topic: 'samples', contract: samplesTopic, key: (g) => g.promptId },
  emits: ['sample/group'],
  inFlightKey: (p) => p.promptId,
  answers: (g) => g.promptId,
  roundOf: (g) => g.round,
  madeBy: (g) => g.policyVersion,
  doneMessage: 'sampled',
  // fixed chunks of sampling.promptsPerCall prompts of the round's prompt order (promptsPerCall × K rows)
  grouping: (ctx) => promptChunks(ctx.roundPromptOrder, ctx.config.sampling.promptsPerCall),
  inRound: (p, ctx) => ctx.roundPrompts.has(p.promptId),
  engineVersion: (v) => v.policy,
  openEngine: (modelDir, config) => Sampler.open({ modelDir, ...engineOptions(config) }),
  operator: (sampler, ctx) => sample({ ...sampleOptions(sampler, ctx), chunkOf: sampleStage.grouping(ctx) }),
  call: (prompts, sampler, ctx) => sampleBatch(prompts, sampleOptions(sampler, ctx)),
  projection: () => {
    let tokens = 0;
    const t0 = performance.now();
    return (g, { lag }) => {
      const n = g.responses.reduce((s, r) => s + r.tokenLength, 0);
      tokens += n;
      return stageEvent('sample/group', {
        promptId: g.promptId,
        policyVersion: g.policyVersion,
        tokens: n,
        tokensPerSecond: tokens / Math.max(1e-9, (performance.now() - t0) / 1000),
        meanLength: g.responses.reduce((s, r) => s + r.charLength, 0) / g.responses.length,
        truncated: g.responses.filter((r) => r.finishReason === 'length').length,
        lag,
      });
    };
  },
};

function sampleOptions(sampler: Sampler, ctx: RoundContext): SampleOptions {
  const { config, versions } = ctx;
  return {
    sampler,
    policyVersion: versions.policy,
    round: versions.round,
    runSeed: config.seed,
    k: config.sampling.k,
    params: generateParams(config),
    chat: usesChatTemplate(config, ctx.dirOf(versions.policy)),
  };
}
