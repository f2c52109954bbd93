import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaConfig } from './llama-config.ts';
import { loadModel, saveModel, type LoadedModel } from './load.ts';
import { SINGLE_FILE_NAME } from './safetensors.ts';
import { toFloat } from './llama-graph.ts';
import type { Weights } from './tensor.ts';
import type { TokenizerFiles } from './tokenizer.ts';

/**
 * A training checkpoint: a Hugging Face model directory (config.json, model.safetensors, tokenizer
 * files — loadable by transformers and by our engines) plus manifest.json, which records the sha256
 * of model.safetensors, the policy version, its parent and reference versions and the training
 * metrics. Loading verifies the hash and refuses a corrupt or altered checkpoint, naming the file.
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
}

export interface CheckpointInput {
  config: LlamaConfig;
  weights: Weights;
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
  const manifestPath = join(dir, MANIFEST_FILE);
  const manifest: CheckpointManifest = {
    format: MANIFEST_FORMAT,
    version: input.version,
    parentVersion: input.parentVersion ?? null,
    referenceVersion: input.referenceVersion ?? null,
    createdAt: new Date().toISOString(),
    weightsFile: SINGLE_FILE_NAME,
    sha256: sha256File(join(dir, SINGLE_FILE_NAME)),
    metrics: input.metrics ?? {},
  };
  writeFileSync(`${manifestPath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(`${manifestPath}.tmp`, manifestPath);
  return manifest;
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
  return manifest;
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
