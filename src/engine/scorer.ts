import type { LlamaConfig } from '../model/llama-config.ts';
import type { PromptInput } from '../model/llama-prompt.ts';
import { startEngine, type EngineHandle } from './engine-host.ts';
import type { ScoreParams } from './scorer-core.ts';
import type { EngineOptions } from './sampler.ts';

export type { ScoreParams } from './scorer-core.ts';

/**
 * The scorer engine, hosted in a worker thread: teacher-forced log π(response | prompt), summed over
 * response tokens (prompt tokens are context only).
 *
 *   const s = await Scorer.open({ modelDir, threads: 2 });
 *   const [r] = await s.score([{ prompt: 'Hi', chat: true, response: 'Hello!' }]);  // r.logProb
 *   await s.close();
 *
 * A text response is encoded without special tokens and, unless appendEos is false, followed by
 * the model's first EOS id, as the sampler's log-prob of an EOS-terminated response counts it.
 */
export interface ScoreRequest extends PromptInput {
  responseTokenIds?: number[];
  response?: string;
  /** For a text response: append EOS (default true). */
  appendEos?: boolean;
}

export interface ScoreOutput {
  logProb: number;
  tokenLogProbs: number[];
  promptTokenIds: number[];
  responseTokenIds: number[];
}

export interface ScorerApi {
  [method: string]: (...args: any[]) => Promise<unknown>;
  info(): Promise<{ config: LlamaConfig; hasTokenizer: boolean; hasChatTemplate: boolean }>;
  score(items: ScoreRequest[], params: ScoreParams): Promise<ScoreOutput[]>;
}

export class Scorer {
  private constructor(
    private readonly handle: EngineHandle<ScorerApi>,
    readonly config: LlamaConfig,
    readonly hasTokenizer: boolean,
    readonly hasChatTemplate: boolean,
  ) {}

  static async open(opts: EngineOptions): Promise<Scorer> {
    const handle = await startEngine<ScorerApi>(new URL('./scorer-worker.ts', import.meta.url), opts);
    const info = await handle.call('info');
    return new Scorer(handle, info.config, info.hasTokenizer, info.hasChatTemplate);
  }

  score(items: ScoreRequest[], params: ScoreParams = {}): Promise<ScoreOutput[]> {
    return this.handle.call('score', items, params);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
