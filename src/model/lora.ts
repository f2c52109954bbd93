/**
 * LoRA adapters (Hu et al. 2021) in PEFT's on-disk format: a directory with adapter_config.json and
 * adapter_model.safetensors, loadable by `peft.PeftModel.from_pretrained` and written by its
 * `save_pretrained`. A targeted Linear W [out, in] gets A [r, in] and B [out, r]; the adapted layer
 * computes W·x + (alpha / r) · B·(A·x). Tensor names are PEFT's saved names:
 *   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight (and lora_B).
 * Supported: PEFT's plain LoRA (no DoRA, no rsLoRA, no bias, no per-layer ranks); anything else is
 * refused naming the adapter_config.json key.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { LORA_TARGETS, loraSchema, type LoraConfig } from '../config/schema.ts';
import { Rng, deriveSeed } from '../util/random.ts';
import type { LlamaConfig } from './llama-config.ts';
import { llamaParameterShapes } from './llama-graph.ts';
import { readSafetensors, toFloat32, writeSafetensors } from './safetensors.ts';
import { numel, type Weights } from './tensor.ts';

export type { LoraConfig } from '../config/schema.ts';

export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';

type Target = (typeof LORA_TARGETS)[number];
const MODULES: Record<Target, string> = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
};
/** PEFT's target_modules names (the last component of the module path). */
const PEFT_MODULE = (t: Target) => MODULES[t].split('.')[1];

export const loraScale = (lora: LoraConfig): number => lora.alpha / lora.r;

/** PEFT's saved name of a Linear's A or B for the HF weight name `…q_proj.weight`. */
export function loraTensorName(weight: string, which: 'A' | 'B'): string {
  return `base_model.model.${weight.replace(/\.weight$/, '')}.lora_${which}.weight`;
}

export interface AdaptedLinear {
  /** HF name of the frozen weight, e.g. model.layers.0.self_attn.q_proj.weight */
  weight: string;
  a: string;
  b: string;
  inFeatures: number;
  outFeatures: number;
}

/** The adapted Linear layers of a model, in layer order. */
export function adaptedLinears(model: LlamaConfig, lora: LoraConfig): AdaptedLinear[] {
  const shapes = llamaParameterShapes(model);
  const out: AdaptedLinear[] = [];
  for (let i = 0; i < model.numLayers; i++) {
    for (const t of LORA_TARGETS) {
      if (!lora.targets.includes(t)) continue;
      const weight = `model.layers.${i}.${MODULES[t]}.weight`;
      const [outFeatures, inFeatures] = shapes.get(weight)!;
      out.push({ weight, a: loraTensorName(weight, 'A'), b: loraTensorName(weight, 'B'), inFeatures, outFeatures });
    }
  }
  return out;
}

/** Adapter tensor names → shapes (A [r, in], B [out, r]): the trainable parameters of a LoRA policy. */
export function loraParameterShapes(model: LlamaConfig, lora: LoraConfig): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const l of adaptedLinears(model, lora)) {
    shapes.set(l.a, [lora.r, l.inFeatures]);
    shapes.set(l.b, [l.outFeatures, lora.r]);
  }
  return shapes;
}

/**
 * PEFT's default initialisation: A ~ kaiming_uniform(a=√5) = U(−1/√in, 1/√in), B = 0, so the
 * adapted policy starts equal to its base. Each tensor has its own stream (seed, 'lora', name).
 */
export function initAdapter(model: LlamaConfig, lora: LoraConfig, seed = 0): Weights {
  const weights: Weights = new Map();
  for (const l of adaptedLinears(model, lora)) {
    const a = new Float32Array(lora.r * l.inFeatures);
    const rng = new Rng(deriveSeed(seed, 'lora', l.a));
    const bound = 1 / Math.sqrt(l.inFeatures);
    for (let i = 0; i < a.length; i++) a[i] = (rng.next() * 2 - 1) * bound;
    weights.set(l.a, { dtype: 'float32', shape: [lora.r, l.inFeatures], data: a });
    weights.set(l.b, { dtype: 'float32', shape: [l.outFeatures, lora.r], data: new Float32Array(l.outFeatures * lora.r) });
  }
  return weights;
}

/** Throws, naming `source` and the problems, unless `adapter` has exactly the tensors model + lora imply. */
export function validateAdapter(model: LlamaConfig, lora: LoraConfig, adapter: Weights, source: string): void {
  const expected = loraParameterShapes(model, lora);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = adapter.get(name);
    if (!t) problems.push(`missing tensor ${name} [${shape}]`);
    else if (t.shape.join(',') !== shape.join(',')) problems.push(`${name} has shape [${t.shape}], expected [${shape}]`);
  }
  for (const name of adapter.keys()) if (!expected.has(name)) problems.push(`unexpected tensor ${name}`);
  if (problems.length > 0) {
    const more = problems.length > 6 ? `; and ${problems.length - 6} more` : '';
    throw new Error(`${source}: adapter does not fit the model (r=${lora.r}, targets ${lora.targets.join(',')}): ${problems.slice(0, 6).join('; ')}${more}`);
  }
}

/** adapter_config.json as PEFT 0.x writes it for a plain LoRA on a causal LM. */
export function peftAdapterConfig(lora: LoraConfig, baseModel: string): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    base_model_name_or_path: baseModel,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: lora.alpha,
    lora_dropout: 0.0,
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.r,
    rank_pattern: {},
    revision: null,
    target_modules: lora.targets.map(PEFT_MODULE),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
}

/** Reads a PEFT adapter_config.json; refuses, naming the key, what this project cannot run. */
export function readAdapterConfig(path: string): { lora: LoraConfig; baseModel: string | null } {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: cannot read as JSON (${(err as Error).message})`);
  }
  const refuse = (key: string, why: string): never => {
    throw new Error(`${path}: "${key}" is ${JSON.stringify(json[key])}: ${why}`);
  };
  if (json.peft_type !== 'LORA') refuse('peft_type', 'only LORA adapters are supported');
  if (json.use_dora) refuse('use_dora', 'DoRA is not supported');
  if (json.use_rslora) refuse('use_rslora', 'rank-stabilised scaling is not supported (only alpha / r)');
  if (json.bias !== undefined && json.bias !== 'none') refuse('bias', 'adapters with trained biases are not supported');
  if (json.fan_in_fan_out) refuse('fan_in_fan_out', 'Conv1D-style (transposed) weights are not supported');
  for (const key of ['lora_bias', 'use_qalora', 'use_bdlora']) if (json[key]) refuse(key, 'this LoRA variant is not supported');
  for (const key of ['layers_to_transform', 'modules_to_save', 'layer_replication', 'target_parameters', 'trainable_token_indices', 'exclude_modules']) {
    const v = json[key];
    if (v !== undefined && v !== null && !(Array.isArray(v) && v.length === 0)) refuse(key, 'not supported (every layer of the targeted modules, nothing else)');
  }
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const v = json[key];
    if (v && typeof v === 'object' && Object.keys(v).length > 0) refuse(key, 'per-module ranks/alphas are not supported');
  }
  const modules = json.target_modules;
  let names: string[];
  if (modules === 'all-linear') names = LORA_TARGETS.map(PEFT_MODULE);
  else if (Array.isArray(modules) && modules.every((m) => typeof m === 'string')) names = modules as string[];
  else names = refuse('target_modules', 'expected a list of module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj) or "all-linear"');
  const targets = names.map((n) => {
    const t = LORA_TARGETS.find((x) => PEFT_MODULE(x) === n);
    return t ?? refuse('target_modules', `module ${n} is not one of ${LORA_TARGETS.map(PEFT_MODULE).join(', ')}`);
  });
  const parsed = loraSchema.safeParse({ r: json.r, alpha: json.lora_alpha, targets: LORA_TARGETS.filter((t) => targets.includes(t)) });
  if (!parsed.success) throw new Error(`${path}: ${parsed.error.issues.map((i) => `${i.path.join('.') === 'alpha' ? 'lora_alpha' : i.path.join('.')}: ${i.message}`).join('; ')}`);
  const base = json.base_model_name_or_path;
  return { lora: parsed.data, baseModel: typeof base === 'string' && base !== '' ? base : null };
}

export interface Adapter {
  lora: LoraConfig;
  weights: Weights;
  /** base_model_name_or_path as written. */
  baseModel: string | null;
}

export function isAdapterDir(dir: string): boolean {
  return existsSync(join(dir, ADAPTER_CONFIG_FILE));
}

/** Writes adapter_config.json and adapter_model.safetensors (float32, metadata {"format": "pt"}). */
export function writeAdapter(dir: string, adapter: Adapter): void {
  mkdirSync(dir, { recursive: true });
  const weights: Weights = new Map();
  for (const [name, t] of adapter.weights) weights.set(name, t.dtype === 'float32' ? t : { dtype: 'float32', shape: t.shape, data: toFloat32(t) });
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), weights, { format: 'pt' });
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(peftAdapterConfig(adapter.lora, adapter.baseModel ?? ''), null, 2)}\n`);
}

/** Reads a PEFT adapter directory (ours or PEFT's save_pretrained); with `model`, checks it fits. */
export function readAdapter(dir: string, model?: LlamaConfig): Adapter {
  const { lora, baseModel } = readAdapterConfig(join(dir, ADAPTER_CONFIG_FILE));
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(path)) throw new Error(`${path}: missing (the adapter's weights; named by ${ADAPTER_CONFIG_FILE})`);
  const weights = readSafetensors(path).weights;
  if (model) validateAdapter(model, lora, weights, path);
  return { lora, weights, baseModel };
}

/** The base model directory an adapter names: base_model_name_or_path, relative to the adapter's directory. */
export function adapterBaseDir(dir: string, baseModel: string | null): string {
  if (baseModel === null) throw new Error(`${join(dir, ADAPTER_CONFIG_FILE)}: "base_model_name_or_path" is empty: name the base model directory`);
  const base = isAbsolute(baseModel) ? baseModel : resolve(dir, baseModel);
  if (!existsSync(join(base, 'config.json')) && !isAdapterDir(base)) {
    throw new Error(`${join(dir, ADAPTER_CONFIG_FILE)}: base_model_name_or_path ${JSON.stringify(baseModel)} is not a local model directory (${base}); download the base and set it there`);
  }
  return base;
}

/**
 * Full weights with the adapter folded in: W + (alpha / r)·B·A for each adapted Linear, in float32;
 * every other tensor is the base's own (not copied).
 */
export function mergeAdapter(model: LlamaConfig, base: Weights, adapter: Adapter): Weights {
  validateAdapter(model, adapter.lora, adapter.weights, 'merge');
  const scale = loraScale(adapter.lora);
  const r = adapter.lora.r;
  const merged: Weights = new Map(base);
  for (const l of adaptedLinears(model, adapter.lora)) {
    const w = base.get(l.weight);
    if (!w) throw new Error(`merge: the base has no tensor ${l.weight}`);
    const out = toFloat32(w).slice();
    const a = toFloat32(adapter.weights.get(l.a)!);
    const b = toFloat32(adapter.weights.get(l.b)!);
    const n = l.inFeatures;
    for (let o = 0; o < l.outFeatures; o++) {
      const row = o * n;
      for (let k = 0; k < r; k++) {
        const s = scale * b[o * r + k];
        if (s === 0) continue;
        const ak = k * n;
        for (let j = 0; j < n; j++) out[row + j] += s * a[ak + j];
      }
    }
    if (out.length !== numel(w.shape)) throw new Error(`merge: ${l.weight} has ${out.length} values`);
    merged.set(l.weight, { dtype: 'float32', shape: w.shape, data: out });
  }
  return merged;
}
