import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { LlamaConfig } from './llama-config.ts';
import { loadModel, saveModel, type LoadedModel } from './load.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, isAdapterDir, writeAdapter, type LoraConfig } from './lora.ts';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME } from './safetensors.ts';
import { toFloat } from './llama-graph.ts';
import type { Weights } from './tensor.ts';
import type { TokenizerFiles } from './tokenizer.ts';

/**
 * A training checkpoint: a Hugging Face model directory (config.json, model.safetensors, tokenizer
 * files — loadable by transformers and by our engines) plus manifest.json, which records the sha256
 * of model.safetensors, the policy version, its parent and reference versions and the training
 * metrics. Loading verifies the hash and refuses a corrupt or altered checkpoint, naming the file.
 *
 * A LoRA checkpoint is a PEFT adapter directory instead (adapter_config.json,
 * adapter_model.safetensors, tokenizer files): the manifest hashes both adapter files and names the
 * base model directory with the sha256 of its weights file, so a changed base is refused too.
 */
export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'dice-checkpoint/1';

export interface CheckpointManifest {
  format: typeof MANIFEST_FORMAT;
  /** This checkpoint's policy version (e.g. 'v3'). */
  version: string;
  /** The checkpoint training started from (π_θ(t−1)); null for one made from scratch. */
  parentVersion: string | null;
  /** The reference model of the DPO loss that produced it (π_ref(t−1)). */
  referenceVersion: string | null;
  createdAt: string;
  weightsFile: string;
  sha256: string;
  /** Training metrics: loss kind, β, steps, last/mean losses, reward accuracy, … */
  metrics: Record<string, unknown>;
  /** A LoRA checkpoint: `weightsFile` is the adapter's; the policy is `base` with the adapter folded in. */
  adapter?: AdapterManifest;
}

export interface AdapterManifest {
  configFile: string;
  configSha256: string;
  base: {
    /** Absolute path of the base model directory (itself a full or a LoRA checkpoint). */
    location: string;
    /** The base's manifest version, when it has one. */
    version: string | null;
    /** Its weights file (model.safetensors, the shard index, or an adapter's adapter_model.safetensors) and that file's sha256. */
    weightsFile: string;
    sha256: string;
  };
  r: number;
  alpha: number;
  targets: string[];
}

/** The file whose sha256 identifies a model directory's weights (a LoRA adapter's own weights for an adapter). */
export function weightsFileOf(dir: string): string {
  if (isAdapterDir(dir)) return ADAPTER_WEIGHTS_FILE;
  return existsSync(join(dir, SINGLE_FILE_NAME)) || !existsSync(join(dir, INDEX_FILE_NAME)) ? SINGLE_FILE_NAME : INDEX_FILE_NAME;
}

export interface CheckpointInput {
  config: LlamaConfig;
  /** Full weights (ignored when `adapter` is given). */
  weights: Weights;
  /** Write a LoRA checkpoint: these adapter tensors (PEFT names) on the base model in `baseDir`. */
  adapter?: { lora: LoraConfig; weights: Weights; baseDir: string };
  tokenizerFiles: TokenizerFiles;
  version: string;
  parentVersion?: string | null;
  referenceVersion?: string | null;
  metrics?: Record<string, unknown>;
}

/** sha256 of a file, read in chunks (a model's weights need not fit in memory twice). */
export function sha256File(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/** Writes the checkpoint directory; the manifest is written last (atomically), so a crash leaves no valid-looking checkpoint. */
export function writeCheckpoint(dir: string, input: CheckpointInput): CheckpointManifest {
  const manifestPath = join(dir, MANIFEST_FILE);
  if (existsSync(manifestPath)) rmSync(manifestPath);
  if (input.adapter) return writeAdapterCheckpoint(dir, input, input.adapter);
  // HF checkpoints are float32 here; a float64 trainer's weights are rounded
  const weights: Weights = new Map([...input.weights].map(([n, t]) => [n, t.dtype === 'float64' ? toFloat(t, 'float32') : t]));
  saveModel(dir, { config: input.config, weights, tokenizerFiles: input.tokenizerFiles });
  return writeManifest(dir, input);
}

/**
 * Writes manifest.json for the model directory's model.safetensors (atomically, last), making it a
 * checkpoint. writeCheckpoint does this after saving; importers that stream the weights call it directly.
 */
export function writeManifest(dir: string, input: Pick<CheckpointInput, 'version' | 'parentVersion' | 'referenceVersion' | 'metrics'>): CheckpointManifest {
  return writeManifestFile(join(dir, MANIFEST_FILE), manifestFields(dir, input, SINGLE_FILE_NAME));
}

/** The manifest fields every checkpoint has: lineage, creation time, and the sha256 of its weights file. */
function manifestFields(
  dir: string,
  input: Pick<CheckpointInput, 'version' | 'parentVersion' | 'referenceVersion' | 'metrics'>,
  weightsFile: string,
): CheckpointManifest {
  return {
    format: MANIFEST_FORMAT,
    version: input.version,
    parentVersion: input.parentVersion ?? null,
    referenceVersion: input.referenceVersion ?? null,
    createdAt: new Date().toISOString(),
    weightsFile,
    sha256: sha256File(join(dir, weightsFile)),
    metrics: input.metrics ?? {},
  };
}

function writeManifestFile(manifestPath: string, manifest: CheckpointManifest): CheckpointManifest {
  writeFileSync(`${manifestPath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(`${manifestPath}.tmp`, manifestPath);
  return manifest;
}

function writeAdapterCheckpoint(dir: string, input: CheckpointInput, adapter: NonNullable<CheckpointInput['adapter']>): CheckpointManifest {
  const baseDir = resolve(adapter.baseDir);
  const baseManifest = existsSync(join(baseDir, MANIFEST_FILE)) ? verifyCheckpoint(baseDir) : null;
  const baseWeights = weightsFileOf(baseDir);
  mkdirSync(dir, { recursive: true });
  writeAdapter(dir, { lora: adapter.lora, weights: adapter.weights, baseModel: baseDir });
  // the tokenizer travels with the adapter (as PEFT's save_pretrained does when given one)
  writeFileSync(join(dir, 'tokenizer.json'), input.tokenizerFiles.tokenizerJson);
  if (input.tokenizerFiles.tokenizerConfig !== null) writeFileSync(join(dir, 'tokenizer_config.json'), input.tokenizerFiles.tokenizerConfig);
  if (input.tokenizerFiles.chatTemplateJinja) writeFileSync(join(dir, 'chat_template.jinja'), input.tokenizerFiles.chatTemplateJinja);
  const manifest: CheckpointManifest = {
    ...manifestFields(dir, input, ADAPTER_WEIGHTS_FILE),
    adapter: {
      configFile: ADAPTER_CONFIG_FILE,
      configSha256: sha256File(join(dir, ADAPTER_CONFIG_FILE)),
      base: { location: baseDir, version: baseManifest?.version ?? null, weightsFile: baseWeights, sha256: sha256File(join(baseDir, baseWeights)) },
      r: adapter.lora.r,
      alpha: adapter.lora.alpha,
      targets: [...adapter.lora.targets],
    },
  };
  return writeManifestFile(join(dir, MANIFEST_FILE), manifest);
}

/** Reads manifest.json and checks the weights' sha256; throws naming the file on any problem. */
export function verifyCheckpoint(dir: string): CheckpointManifest {
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw new Error(`${manifestPath}: no checkpoint manifest (not a dice checkpoint, or an unfinished one)`);
  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as CheckpointManifest;
  } catch (err) {
    throw new Error(`${manifestPath}: not valid JSON (${(err as Error).message})`);
  }
  if (manifest.format !== MANIFEST_FORMAT) throw new Error(`${manifestPath}: "format" is ${JSON.stringify(manifest.format)}, expected "${MANIFEST_FORMAT}"`);
  if (typeof manifest.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(manifest.sha256)) throw new Error(`${manifestPath}: "sha256" must be 64 hex digits`);
  if (typeof manifest.version !== 'string' || manifest.version === '') throw new Error(`${manifestPath}: "version" must be a non-empty string`);
  const weightsPath = join(dir, manifest.weightsFile ?? SINGLE_FILE_NAME);
  if (!existsSync(weightsPath)) throw new Error(`${weightsPath}: missing (named by ${manifestPath})`);
  const actual = sha256File(weightsPath);
  if (actual !== manifest.sha256) {
    throw new Error(`${weightsPath}: corrupt checkpoint — sha256 ${actual} does not match ${manifest.sha256} in ${manifestPath}`);
  }
  if (manifest.adapter) verifyAdapterManifest(dir, manifestPath, manifest.adapter);
  return manifest;
}

function verifyAdapterManifest(dir: string, manifestPath: string, adapter: AdapterManifest): void {
  const configPath = join(dir, adapter.configFile ?? ADAPTER_CONFIG_FILE);
  if (!existsSync(configPath)) throw new Error(`${configPath}: missing (named by ${manifestPath})`);
  const configSha = sha256File(configPath);
  if (configSha !== adapter.configSha256) throw new Error(`${configPath}: altered — sha256 ${configSha} does not match ${adapter.configSha256} in ${manifestPath}`);
  const base = adapter.base;
  const baseWeights = join(base?.location ?? '', base?.weightsFile ?? SINGLE_FILE_NAME);
  if (!base || !existsSync(baseWeights)) throw new Error(`${manifestPath}: the adapter's base model ${baseWeights} is missing`);
  const baseSha = sha256File(baseWeights);
  if (baseSha !== base.sha256) {
    throw new Error(`${baseWeights}: the adapter's base model changed — sha256 ${baseSha} does not match ${base.sha256} in ${manifestPath}`);
  }
}

/** Verifies, then loads the model directory. */
export function loadCheckpoint(dir: string): LoadedModel & { manifest: CheckpointManifest } {
  const manifest = verifyCheckpoint(dir);
  return { ...loadModel(dir), manifest };
}

/**
 * The one way commands and engines load a model directory: a dice checkpoint (one with manifest.json)
 * is verified against its manifest first, so a corrupt or altered one is refused naming the file; a
 * plain Hugging Face directory (no manifest) loads as it is.
 */
export function loadModelDir(dir: string): LoadedModel & { manifest: CheckpointManifest | null } {
  const manifest = existsSync(join(dir, MANIFEST_FILE)) ? verifyCheckpoint(dir) : null;
  return { ...loadModel(dir), manifest };
}
