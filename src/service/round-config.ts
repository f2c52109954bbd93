import type { AlphaOptions } from '../../operators/alpha.ts';
import { trainBeta, type RunConfig } from '../config/schema.ts';
import type { GenerateParams } from '../engine/sampler.ts';
import type { TrainerOptions } from '../engine/trainer.ts';

/** The engines' and operators' settings derived from a run config — one mapping for `run` and `serve`. */

export function generateParams(config: RunConfig): Partial<GenerateParams> {
  const s = config.sampling;
  return { temperature: s.temperature, topP: s.topP, topK: s.topK, maxNewTokens: s.maxNewTokens, maxBatchRows: s.promptsPerCall * s.k };
}

export function alphaOptions(config: RunConfig, round: number): AlphaOptions {
  return {
    round,
    mode: config.alpha.mode,
    value: config.alpha.value,
    multiplier: config.alpha.multiplier,
    maxAlpha: config.alpha.max,
    lengthUnit: config.reward.lengthUnit,
    filters: {
      dropTruncated: config.filters.dropTruncated,
      minLength: config.filters.minLength,
      maxLength: config.filters.maxLength,
      minKeptFraction: config.filters.minValidFraction,
      k: config.sampling.k,
    },
    windowSize: config.alpha.window,
    windowCap: config.alpha.windowCap,
  };
}

export function trainerOptions(config: RunConfig): TrainerOptions {
  return {
    loss: config.train.loss,
    beta: trainBeta(config),
    lr: config.train.lr,
    warmupSteps: config.train.warmupSteps,
    adamw: { weightDecay: config.train.weightDecay, maxGradNorm: config.train.maxGradNorm },
    microBatch: config.train.microBatch || undefined,
    threads: config.threads,
    provider: config.provider,
    // LoRA: each round trains a fresh adapter on π_θ(t−1), frozen (so the round's reference π_θ(t−1) is the adapter off)
    lora: config.train.lora ? { config: config.train.lora, seed: config.seed } : undefined,
  };
}

export function engineOptions(config: RunConfig): { threads: number; provider: RunConfig['provider'] } {
  return { threads: config.threads, provider: config.provider };
}
