/**
 * Hugging Face config.json ⇄ LlamaConfig, for LlamaForCausalLM and Qwen2ForCausalLM.
 *
 * Defaults are those transformers (v5, same as v4 for these keys) applies when a key is absent, with one
 * deliberate difference: the five keys that fix the tensor shapes (vocab_size, hidden_size,
 * intermediate_size, num_hidden_layers, num_attention_heads) are required, because transformers'
 * defaults for them describe a 7B model and a config.json without them is surely broken.
 * RoPE parameters are read from `rope_scaling` (v4 files), else `rope_parameters` (v5 files), with
 * rope_theta from there or the top level, as transformers' `convert_rope_params_to_dict` does.
 * Features our graphs do not implement (other rope types, sliding windows, Llama o_proj/MLP biases,
 * activations other than SiLU) are rejected with an error rather than silently ignored.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Architecture, Llama3RopeScaling, LlamaConfig } from './llama-config.ts';

const CLASS_BY_ARCH: Record<Architecture, string> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM' };
const ARCH_BY_CLASS = new Map(Object.entries(CLASS_BY_ARCH).map(([a, c]) => [c, a as Architecture]));

/** transformers' class defaults for the keys that may be absent. */
const DEFAULTS: Record<Architecture, { maxPositionEmbeddings: number; bos: number | null; eos: number | null }> = {
  llama: { maxPositionEmbeddings: 2048, bos: 1, eos: 2 },
  qwen2: { maxPositionEmbeddings: 32768, bos: null, eos: null },
};
const DEFAULT_RMS_EPS = 1e-6;
const DEFAULT_ROPE_THETA = 10000;

type Json = Record<string, unknown>;

class ConfigReader {
  constructor(
    private readonly raw: Json,
    private readonly source: string,
  ) {}

  fail(key: string, problem: string): never {
    throw new Error(`${this.source}: "${key}" ${problem}`);
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined && this.raw[key] !== null;
  }

  int(key: string, fallback?: number, min = 0, obj: Json = this.raw, path = key): number {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) this.fail(path, 'is missing (required)');
      return fallback!;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      this.fail(path, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v as number;
  }

  num(key: string, fallback: number | undefined, obj: Json = this.raw, path = key): number {
    const v = obj[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) this.fail(path, 'is missing (required)');
      return fallback!;
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) this.fail(path, `must be a positive number, got ${JSON.stringify(v)}`);
    return v as number;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  }

  tokenId(key: string, fallback: number | null): number | null {
    const v = this.raw[key];
    if (v === undefined) return fallback;
    if (v === null) return null;
    return this.int(key);
  }

  tokenIds(key: string, fallback: number | null): number[] {
    const v = this.raw[key];
    if (v === undefined) return fallback === null ? [] : [fallback];
    if (v === null) return [];
    if (Array.isArray(v)) {
      return v.map((id, i) => {
        if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) this.fail(`${key}[${i}]`, `must be a token id, got ${JSON.stringify(id)}`);
        return id as number;
      });
    }
    return [this.int(key)];
  }
}

function architectureOf(r: ConfigReader, raw: Json): Architecture {
  const supported = `supported: ${[...ARCH_BY_CLASS.keys()].join(', ')} (model_type ${Object.keys(CLASS_BY_ARCH).join(', ')})`;
  let fromClass: Architecture | undefined;
  if (r.has('architectures')) {
    const list = raw.architectures;
    if (!Array.isArray(list) || list.length === 0 || typeof list[0] !== 'string') {
      r.fail('architectures', `must be a non-empty list of class names, got ${JSON.stringify(list)}`);
    }
    const name = (list as string[])[0];
    fromClass = ARCH_BY_CLASS.get(name);
    if (!fromClass) r.fail('architectures', `names an unsupported architecture "${name}"; ${supported}`);
  }
  let fromType: Architecture | undefined;
  if (r.has('model_type')) {
    const t = raw.model_type;
    if (typeof t !== 'string' || !(t in CLASS_BY_ARCH)) r.fail('model_type', `is an unsupported model type ${JSON.stringify(t)}; ${supported}`);
    fromType = t as Architecture;
  }
  if (fromClass && fromType && fromClass !== fromType) {
    r.fail('model_type', `is "${fromType}" but architectures names ${CLASS_BY_ARCH[fromClass]}`);
  }
  const arch = fromType ?? fromClass;
  if (!arch) r.fail('model_type', `is missing (and so is "architectures"); ${supported}`);
  return arch!;
}

function ropeOf(r: ConfigReader, raw: Json, maxPositionEmbeddings: number): { theta: number; scaling: Llama3RopeScaling | null } {
  const key = r.has('rope_scaling') ? 'rope_scaling' : 'rope_parameters';
  const params = (raw[key] ?? {}) as Json;
  if (typeof params !== 'object' || Array.isArray(params)) r.fail(key, `must be an object, got ${JSON.stringify(params)}`);
  const theta = r.num('rope_theta', r.num('rope_theta', DEFAULT_ROPE_THETA), params, `${key}.rope_theta`);
  const type = params.rope_type ?? params.type ?? 'default';
  if (type === 'default') return { theta, scaling: null };
  if (type !== 'llama3') r.fail(`${key}.rope_type`, `is ${JSON.stringify(type)}; only "default" and "llama3" RoPE are supported`);
  return {
    theta,
    scaling: {
      ropeType: 'llama3',
      factor: r.num('factor', undefined, params, `${key}.factor`),
      lowFreqFactor: r.num('low_freq_factor', undefined, params, `${key}.low_freq_factor`),
      highFreqFactor: r.num('high_freq_factor', undefined, params, `${key}.high_freq_factor`),
      originalMaxPositionEmbeddings: r.int('original_max_position_embeddings', maxPositionEmbeddings, 1, params, `${key}.original_max_position_embeddings`),
    },
  };
}

/** Parses a config.json object; `source` names the file in errors. */
export function parseHfConfig(json: unknown, source = 'config.json'): LlamaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${source}: not a JSON object`);
  const raw = json as Json;
  const r = new ConfigReader(raw, source);
  const architecture = architectureOf(r, raw);
  const d = DEFAULTS[architecture];

  const hiddenSize = r.int('hidden_size', undefined, 1);
  const numHeads = r.int('num_attention_heads', undefined, 1);
  // Qwen2Config's class default is 32 when the key is absent; an explicit null means "as many as heads".
  const kvDefault = architecture === 'qwen2' && raw.num_key_value_heads === undefined ? 32 : numHeads;
  const numKvHeads = r.int('num_key_value_heads', kvDefault, 1);
  const headDim = r.int('head_dim', Math.floor(hiddenSize / numHeads), 1);
  if (architecture === 'llama' && hiddenSize % numHeads !== 0) {
    r.fail('hidden_size', `(${hiddenSize}) must be a multiple of num_attention_heads (${numHeads})`);
  }
  if (numHeads % numKvHeads !== 0) {
    const note = raw.num_key_value_heads === undefined ? ', transformers\' default when the key is absent,' : '';
    r.fail('num_key_value_heads', `(${numKvHeads}${note}) must divide num_attention_heads (${numHeads})`);
  }
  const maxPositionEmbeddings = r.int('max_position_embeddings', d.maxPositionEmbeddings, 1);
  const rope = ropeOf(r, raw, maxPositionEmbeddings);

  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') r.fail('hidden_act', `is ${JSON.stringify(act)}; only "silu" (SwiGLU) is supported`);
  let attentionBias = true; // Qwen2 always has q/k/v biases
  if (architecture === 'llama') {
    // Llama's attention_bias also puts a bias on o_proj, which LlamaConfig cannot express.
    if (r.bool('attention_bias', false)) r.fail('attention_bias', 'is true: Llama attention biases (incl. o_proj) are not supported');
    if (r.bool('mlp_bias', false)) r.fail('mlp_bias', 'is true: MLP biases are not supported');
    attentionBias = false;
  } else if (r.bool('use_sliding_window', false)) {
    r.fail('use_sliding_window', 'is true: sliding-window attention is not supported');
  }

  return {
    architecture,
    vocabSize: r.int('vocab_size', undefined, 1),
    hiddenSize,
    intermediateSize: r.int('intermediate_size', undefined, 1),
    numLayers: r.int('num_hidden_layers', undefined, 1),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: r.num('rms_norm_eps', DEFAULT_RMS_EPS),
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    maxPositionEmbeddings,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    attentionBias,
    bosTokenId: r.tokenId('bos_token_id', d.bos),
    eosTokenIds: r.tokenIds('eos_token_id', d.eos),
    padTokenId: r.tokenId('pad_token_id', null),
  };
}

/** Reads and parses a config.json file. */
export function readHfConfig(path: string): LlamaConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`${path}: cannot read model config (${(err as Error).message})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  return parseHfConfig(json, path);
}

function eosJson(ids: number[]): number | number[] | null {
  return ids.length === 0 ? null : ids.length === 1 ? ids[0] : ids;
}

/**
 * config.json content in Hugging Face form. Carries RoPE both as transformers 5 writes it
 * (`rope_parameters`) and as transformers 4 reads it (`rope_theta`, `rope_scaling`); v5 reads both alike.
 */
export function hfConfigJson(config: LlamaConfig, opts: { dtype?: string } = {}): Json {
  const s = config.ropeScaling;
  const scaling = s
    ? {
        rope_type: 'llama3',
        factor: s.factor,
        low_freq_factor: s.lowFreqFactor,
        high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositionEmbeddings,
      }
    : null;
  const out: Json = {
    architectures: [CLASS_BY_ARCH[config.architecture]],
    model_type: config.architecture,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.numLayers,
    num_attention_heads: config.numHeads,
    num_key_value_heads: config.numKvHeads,
    head_dim: config.headDim,
    hidden_act: 'silu',
    max_position_embeddings: config.maxPositionEmbeddings,
    rms_norm_eps: config.rmsNormEps,
    rope_theta: config.ropeTheta,
    rope_scaling: scaling,
    rope_parameters: { rope_theta: config.ropeTheta, ...(scaling ?? { rope_type: 'default' }) },
    tie_word_embeddings: config.tieWordEmbeddings,
    bos_token_id: config.bosTokenId,
    eos_token_id: eosJson(config.eosTokenIds),
    pad_token_id: config.padTokenId,
    initializer_range: 0.02,
    attention_dropout: 0.0,
    use_cache: true,
    dtype: opts.dtype ?? 'float32',
  };
  if (config.architecture === 'llama') {
    if (config.attentionBias) throw new Error('hfConfigJson: a Llama config with attentionBias cannot be written (o_proj bias)');
    Object.assign(out, { attention_bias: false, mlp_bias: false, pretraining_tp: 1 });
  } else {
    if (!config.attentionBias) throw new Error('hfConfigJson: Qwen2 always has q/k/v biases (attentionBias must be true)');
    Object.assign(out, { use_sliding_window: false, sliding_window: null, max_window_layers: config.numLayers });
  }
  return sortKeys(out);
}

/** generation_config.json content (what `generate()` uses for bos/eos/pad). */
export function generationConfigJson(config: LlamaConfig): Json {
  return sortKeys({
    bos_token_id: config.bosTokenId,
    eos_token_id: eosJson(config.eosTokenIds),
    pad_token_id: config.padTokenId,
  });
}

function sortKeys(obj: Json): Json {
  return Object.fromEntries(Object.entries(obj).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** JSON text as transformers' save_pretrained lays it out (sorted keys, 2-space indent, trailing newline). */
export function formatJson(obj: unknown): string {
  return `${JSON.stringify(obj, null, 2)}\n`;
}

export function writeHfConfig(path: string, config: LlamaConfig, opts: { dtype?: string } = {}): void {
  writeFileSync(path, formatJson(hfConfigJson(config, opts)));
}
