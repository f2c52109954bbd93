import type { CheckpointManifest } from '../model/checkpoint.ts';
import type { LlamaConfig } from '../model/llama-config.ts';
import type { ModelSource } from '../model/llama-source.ts';
import type { Weights } from '../model/tensor.ts';
import { startEngine, type EngineHandle } from './engine-host.ts';
import type { Row } from './trainer-batch.ts';
import type { StepMetrics, TrainBatch, TrainerOptions, TrainerState } from './trainer-core.ts';

export type { StepMetrics, TrainBatch, TrainerOptions, TrainerState } from './trainer-core.ts';
export type { PreferencePair, SftExample, Row } from './trainer-batch.ts';
export { ktoMismatchedRows, preferenceRows } from './trainer-batch.ts';

/**
 * The trainer engine, hosted in a worker thread (onnxruntime runs block their thread):
 *
 *   const t = await Trainer.open({ modelDir }, { loss: 'dpo', beta: 0.1, lr: 5e-7, warmupSteps: 50 });
 *   const m = await t.step({ kind: 'preference', pairs });   // m.loss, m.rewardAccuracy, m.margin, …
 *   await t.save(outDir, { version: 'v1', parentVersion: 'v0', referenceVersion: 'v0', metrics: {...} });
 *   await t.close();
 */
export interface TrainerInit {
  source: ModelSource;
  options: TrainerOptions;
}

export interface SaveMeta {
  version: string;
  parentVersion?: string | null;
  referenceVersion?: string | null;
  metrics?: Record<string, unknown>;
}

export interface TrainerApi {
  // biome-ignore lint: any lets each method keep its own parameter types
  [method: string]: (...args: any[]) => Promise<unknown>;
  info(): Promise<{ config: LlamaConfig }>;
  step(batch: TrainBatch): Promise<StepMetrics>;
  policyLogps(rows: Row[]): Promise<number[]>;
  baseLogps(rows: Row[]): Promise<number[]>;
  weights(): Promise<Weights>;
  state(): Promise<TrainerState>;
  setState(state: { step: number; m?: Weights; v?: Weights }): Promise<void>;
  save(dir: string, meta: SaveMeta): Promise<CheckpointManifest>;
}

export class Trainer {
  private constructor(
    private readonly handle: EngineHandle<TrainerApi>,
    readonly config: LlamaConfig,
  ) {}

  static async open(source: ModelSource, options: TrainerOptions): Promise<Trainer> {
    const handle = await startEngine<TrainerApi>(new URL('./trainer-worker.ts', import.meta.url), { source, options } satisfies TrainerInit);
    const { config } = await handle.call('info');
    return new Trainer(handle, config);
  }

  /** One optimizer step (micro-batches accumulated); resolves with the step's metrics. */
  step(batch: TrainBatch): Promise<StepMetrics> {
    return this.handle.call('step', batch);
  }

  /** Summed response log-probs of rows under the current policy (no gradient). */
  policyLogps(rows: Row[]): Promise<number[]> {
    return this.handle.call('policyLogps', rows);
  }

  /** LoRA: summed response log-probs under the frozen weights, the adapter off (the reference of a LoRA policy). */
  baseLogps(rows: Row[]): Promise<number[]> {
    return this.handle.call('baseLogps', rows);
  }

  weights(): Promise<Weights> {
    return this.handle.call('weights');
  }

  state(): Promise<TrainerState> {
    return this.handle.call('state');
  }

  setState(state: { step: number; m?: Weights; v?: Weights }): Promise<void> {
    return this.handle.call('setState', state);
  }

  /** Writes an HF-format checkpoint with manifest.json (sha256, versions, metrics). */
  save(dir: string, meta: SaveMeta): Promise<CheckpointManifest> {
    return this.handle.call('save', dir, meta);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
