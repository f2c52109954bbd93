import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate } from './chat-template.ts';
import { loadModelDir, MANIFEST_FILE, sha256File, verifyCheckpoint } from './checkpoint.ts';
import { saveModel, type LoadedModel } from './load.ts';
import { adapterBaseDir, isAdapterDir, mergeAdapter, readAdapter, readAdapterConfig, ADAPTER_CONFIG_FILE, type Adapter, type LoraConfig } from './lora.ts';
import { fromFloat32, SINGLE_FILE_NAME, toFloat32 } from './safetensors.ts';
import type { Weights } from './tensor.ts';
import { Tokenizer } from './tokenizer.ts';

/**
 * A policy directory as the engines run it: a Hugging Face model directory, or a PEFT LoRA adapter
 * directory (ours or PEFT's) on a base named by base_model_name_or_path — itself either kind, so a
 * chain of per-round adapters resolves. An adapter is folded into its base's weights (merged): the
 * engines then run the plain graph, which bench/lora.ts measured faster than base + adapter terms.
 * A dice checkpoint's manifest is verified first (for an adapter: its files and the base's sha256).
 */
export interface LoadedPolicy extends LoadedModel {
  /** The adapters folded in, outermost (this directory's) first; empty for a full model. */
  adapters: Array<Adapter & { dir: string }>;
}

export function loadPolicy(dir: string): LoadedPolicy {
  if (!isAdapterDir(dir)) return { ...loadModelDir(dir), adapters: [] }; // a full checkpoint's manifest is verified there
  if (existsSync(join(dir, MANIFEST_FILE))) verifyCheckpoint(dir);
  const baseDir = adapterBaseDir(dir, readAdapterConfig(join(dir, ADAPTER_CONFIG_FILE)).baseModel);
  const base = loadPolicy(baseDir);
  const adapter = readAdapter(dir, base.config);
  const weights = mergeAdapter(base.config, base.weights, adapter);
  base.weights.clear();
  // the adapter's own tokenizer files when it carries them (PEFT saves them there if asked)
  let { tokenizer, chatTemplate } = base;
  if (tokenizerDirOf(dir) === dir) {
    tokenizer = Tokenizer.fromDir(dir);
    chatTemplate = ChatTemplate.fromTokenizerConfig(tokenizer.config, tokenizer.files.chatTemplateJinja, join(dir, 'tokenizer_config.json'));
  }
  return { dir, config: base.config, weights, tokenizer, chatTemplate, adapters: [{ ...adapter, dir }, ...base.adapters] };
}

/** The full model directory under a chain of adapters (the directory itself for a full model). */
export function rootModelDir(dir: string): string {
  let at = dir;
  for (let depth = 0; isAdapterDir(at); depth++) {
    if (depth > 64) throw new Error(`${dir}: more than 64 adapters chained (a base_model_name_or_path loop?)`);
    at = adapterBaseDir(at, readAdapterConfig(join(at, ADAPTER_CONFIG_FILE)).baseModel);
  }
  return at;
}

/** The directory holding a policy's tokenizer: the adapter's own copy when it has one, else its root model's. */
export function tokenizerDirOf(dir: string): string {
  return existsSync(join(dir, 'tokenizer.json')) ? dir : rootModelDir(dir);
}

/**
 * `dice model merge`: the policy of an adapter directory (on `base` when given, else the base it
 * names) as a full model directory in `dtype`. Returns what it wrote.
 */
export function mergeCommand(adapterDir: string, opts: { out: string; base?: string; dtype?: 'float32' | 'bfloat16' | 'float16' }): { root: string; adapters: number; lora: LoraConfig; sha256: string } {
  if (!isAdapterDir(adapterDir)) throw new Error(`${adapterDir}: no ${ADAPTER_CONFIG_FILE} (not a LoRA adapter directory)`);
  let policy: LoadedPolicy;
  if (opts.base) {
    const base = loadPolicy(opts.base);
    const adapter = readAdapter(adapterDir, base.config);
    policy = { ...base, weights: mergeAdapter(base.config, base.weights, adapter), adapters: [{ ...adapter, dir: adapterDir }, ...base.adapters] };
  } else policy = loadPolicy(adapterDir);
  const dtype = opts.dtype ?? 'float32';
  const weights: Weights = new Map([...policy.weights].map(([n, t]) => [n, fromFloat32(toFloat32(t), t.shape, dtype)]));
  saveModel(opts.out, { config: policy.config, weights, tokenizerFiles: policy.tokenizer.files });
  return { root: opts.base ? rootModelDir(opts.base) : rootModelDir(adapterDir), adapters: policy.adapters.length, lora: policy.adapters[0].lora, sha256: sha256File(join(opts.out, SINGLE_FILE_NAME)) };
}
