import type { LlamaConfig } from '../model/llama-config.ts';
import type { PromptInput } from '../model/llama-prompt.ts';
import type { ModelSource } from '../model/llama-source.ts';
import type { ExecutionProvider } from '../onnx/session.ts';
import { startEngine, type EngineHandle } from './engine-host.ts';
import type { FinishReason, GenerateParams } from './sampler-core.ts';

export type { FinishReason, GenerateParams } from './sampler-core.ts';

/**
 * The sampler engine, hosted in a worker thread:
 *
 *   const s = await Sampler.open({ modelDir, threads: 2 });
 *   const results = await s.generate([{ promptId: 'p1', prompt: 'Hi', chat: true, k: 4, seed: 7 }], { temperature: 0.7, topP: 0.9, maxNewTokens: 64 });
 *   await s.close();
 *
 * Each result holds one entry per sample k (token ids, text, finish reason, untempered log-prob of the
 * response including EOS). A request that cannot be served (prompt too long, bad ids, no tokenizer
 * for a text prompt) gets `error` and no samples; the others are unaffected.
 */

export interface EngineOptions extends ModelSource {
  /** onnxruntime intra-op threads (fixed: part of what makes results repeat exactly). Default 1. */
  threads?: number;
  provider?: ExecutionProvider;
  /** onnxruntime's idle threads spin between ops (default: onnxruntime's, yes); see SessionConfig.spinning. */
  spinning?: boolean;
}

export interface SampleRequest extends PromptInput {
  promptId: string;
  k: number;
  seed: number;
}

export interface SampleOutput {
  k: number;
  seed: number;
  tokenIds: number[];
  /** Decoded response (special tokens skipped); null when the model has no tokenizer. */
  text: string | null;
  finishReason: FinishReason;
  logProb: number;
}

export interface SampleResult {
  promptId: string;
  promptTokenIds: number[];
  samples: SampleOutput[];
  error?: string;
}

export interface SamplerApi {
  [method: string]: (...args: any[]) => Promise<unknown>;
  info(): Promise<{ config: LlamaConfig; hasTokenizer: boolean; hasChatTemplate: boolean }>;
  generate(requests: SampleRequest[], params: Partial<GenerateParams>): Promise<SampleResult[]>;
}

export class Sampler {
  private constructor(
    private readonly handle: EngineHandle<SamplerApi>,
    readonly config: LlamaConfig,
    /** Text prompts and response texts need a tokenizer; `chat: true` needs a chat template. */
    readonly hasTokenizer: boolean,
    readonly hasChatTemplate: boolean,
  ) {}

  static async open(opts: EngineOptions): Promise<Sampler> {
    const handle = await startEngine<SamplerApi>(new URL('./sampler-worker.ts', import.meta.url), opts);
    const info = await handle.call('info');
    return new Sampler(handle, info.config, info.hasTokenizer, info.hasChatTemplate);
  }

  generate(requests: SampleRequest[], params: Partial<GenerateParams> = {}): Promise<SampleResult[]> {
    return this.handle.call('generate', requests, params);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
