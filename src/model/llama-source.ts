import { join } from 'node:path';
import { ChatTemplate } from './chat-template.ts';
import type { LlamaConfig } from './llama-config.ts';
import { loadPolicy } from './policy.ts';
import type { Weights } from './tensor.ts';
import { Tokenizer } from './tokenizer.ts';

/**
 * Where an engine gets its model: a Hugging Face model directory (or a PEFT LoRA adapter on one), or weights in memory (e.g. fresh
 * from the trainer) with an optional directory holding the tokenizer. Plain data, so it can be sent
 * to a worker thread.
 */
export interface ModelSource {
  modelDir?: string;
  model?: { config: LlamaConfig; weights: Weights; tokenizerDir?: string };
}

export interface EngineModel {
  config: LlamaConfig;
  weights: Weights;
  tokenizer: Tokenizer | null;
  chatTemplate: ChatTemplate | null;
}

export function resolveModel(src: ModelSource): EngineModel {
  if (src.modelDir !== undefined) {
    const m = loadPolicy(src.modelDir); // a LoRA adapter directory arrives merged into its base
    return { config: m.config, weights: m.weights, tokenizer: m.tokenizer, chatTemplate: m.chatTemplate };
  }
  if (!src.model) throw new Error('engine: give modelDir or model');
  const { config, weights, tokenizerDir } = src.model;
  if (tokenizerDir === undefined) return { config, weights, tokenizer: null, chatTemplate: null };
  const tokenizer = Tokenizer.fromDir(tokenizerDir);
  const chatTemplate = ChatTemplate.fromTokenizerConfig(tokenizer.config, tokenizer.files.chatTemplateJinja, join(tokenizerDir, 'tokenizer_config.json'));
  return { config, weights, tokenizer, chatTemplate };
}
