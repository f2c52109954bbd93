import type { OperatorFunction } from 'rxjs';
import type { PromptRecord } from '../topics/prompts.ts';
import type { SamplesGroup } from '../topics/samples.ts';
import { charLength } from '../src/dice/reward.ts';
import type { GenerateParams } from '../src/engine/sampler.ts';
import { deriveSeed } from '../src/util/random.ts';
import { alone, answerInBatches, type BatchOf } from './engine-batches.ts';
import type { Rejected, SamplerPort } from './ports.ts';

export interface SampleOptions {
  sampler: SamplerPort;
  /** The checkpoint version of the sampler's policy π_θ(t−1); recorded on every group. */
  policyVersion: number;
  round: number;
  runSeed: number;
  /** K responses per prompt. */
  k: number;
  params: Partial<GenerateParams>;
  /** Render prompts through the model's chat template. */
  chat: boolean;
  /**
   * The engine batch of each prompt (e.g. `promptChunks`; default: each prompt alone). Each batch is
   * sampled whole when its first member arrives, whatever arrives when, so every sample's float
   * rounding is fixed by the round's prompt list alone.
   */
  chunkOf?: BatchOf<PromptRecord>;
}

/**
 * The engine batches of a round as a rule independent of timing and restarts: the round's prompts in
 * their fixed order, cut into consecutive chunks of `promptsPerChunk`; a prompt's batch is its chunk
 * (all of it, including members already answered before a restart). undefined: not a round prompt.
 */
export function promptChunks<P extends { promptId: string }>(roundPrompts: readonly P[], promptsPerChunk: number): (promptId: string) => readonly P[] | undefined {
  if (!Number.isInteger(promptsPerChunk) || promptsPerChunk < 1) throw new Error(`prompt chunks: prompts per chunk must be an integer ≥ 1, got ${promptsPerChunk}`);
  const chunks = new Map<string, readonly P[]>();
  for (let start = 0; start < roundPrompts.length; start += promptsPerChunk) {
    const chunk = roundPrompts.slice(start, start + promptsPerChunk);
    for (const p of chunk) {
      if (chunks.has(p.promptId)) throw new Error(`prompt chunks: prompt id ${p.promptId} appears twice in the round`);
      chunks.set(p.promptId, chunk);
    }
  }
  return (promptId) => chunks.get(promptId);
}

/**
 * prompts → samples: K responses per prompt from the current policy, each with the policy's
 * untempered log-prob recorded during sampling (so the scorer needs no policy pass). Seeds are
 * deriveSeed(runSeed, promptId, policyVersion) per prompt and derived per k inside the engine,
 * so a replay with the same weights reproduces the same samples whatever the batching.
 *
 *   p1-p2-p3-|  sample  --g1-g2-g3-|      (a prompt the engine refuses becomes a Rejected)
 */
export function sample(options: SampleOptions): OperatorFunction<PromptRecord, SamplesGroup | Rejected> {
  return answerInBatches((p) => p.promptId, options.chunkOf ?? alone(), (prompts) => sampleBatch(prompts, options));
}

/** One engine call for a batch of prompts: a samples group per prompt, or a Rejected naming why. */
export async function sampleBatch(
  prompts: PromptRecord[],
  options: Pick<SampleOptions, 'sampler' | 'policyVersion' | 'round' | 'runSeed' | 'k' | 'params' | 'chat'>,
): Promise<Array<SamplesGroup | Rejected>> {
  const { sampler, policyVersion, round, runSeed, k, params, chat } = options;
  const results = await sampler.generate(
    prompts.map((p) => ({
      promptId: p.promptId,
      prompt: p.messages ?? p.text ?? '',
      chat: chat || p.messages !== null,
      k,
      seed: deriveSeed(runSeed, p.promptId, policyVersion),
    })),
    params,
  );
  return results.map((r, i): SamplesGroup | Rejected => {
    if (r.error) return { kind: 'rejected', key: prompts[i].promptId, error: r.error };
    return {
      promptId: r.promptId,
      prompt: promptText(prompts[i]),
      promptTokenIds: Int32Array.from(r.promptTokenIds),
      round,
      policyVersion,
      runSeed,
      responses: r.samples.map((s) => {
        const text = s.text ?? '';
        return {
          k: s.k,
          seed: s.seed,
          tokenIds: Int32Array.from(s.tokenIds),
          text,
          charLength: charLength(text),
          tokenLength: s.tokenIds.length,
          finishReason: s.finishReason,
          policyLogp: s.logProb,
        };
      }),
    };
  });
}

/** The prompt as text for records and reports (chat messages joined by role). */
export function promptText(p: PromptRecord): string {
  if (p.text !== null) return p.text;
  return (p.messages ?? []).map((m) => `${m.role}: ${m.content}`).join('\n');
}
