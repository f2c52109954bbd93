/** The bench model and batch shared by bench:train and bench/train-profile.ts. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeInitModel } from '../src/model/init.ts';
import type { LlamaConfig } from '../src/model/llama-config.ts';
import { Rng } from '../src/util/random.ts';

/** The random `shape`-shaped model of the benches (made on first use). */
export function benchModelDir(shape: string): string {
  const dir = join('.dice', 'bench', shape);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    console.error(`initialising ${dir} (random ${shape}-shaped weights)`);
    writeInitModel(shape, dir, { seed: 0 });
  }
  return dir;
}

export interface BenchBatch {
  promptTokenIds: number[][];
  chosen: number[][];
  rejected: number[][];
  refChosen: number[];
  refRejected: number[];
}

/** P pairs of L tokens (L/2 prompt, L/2 response): deterministic ids from a fixed seed. */
export function makeBenchBatch(config: LlamaConfig, pairs: number, length: number): BenchBatch {
  const rng = new Rng(1234);
  const vocab = Math.min(config.vocabSize, 1000);
  const seq = (n: number) => Array.from({ length: n }, () => 3 + rng.int(vocab - 3));
  const half = length / 2;
  const promptTokenIds = Array.from({ length: pairs }, () => seq(half));
  return {
    promptTokenIds,
    chosen: Array.from({ length: pairs }, () => seq(half)),
    rejected: Array.from({ length: pairs }, () => seq(half)),
    refChosen: Array.from({ length: pairs }, () => -half * 7 + rng.next()),
    refRejected: Array.from({ length: pairs }, () => -half * 7 + rng.next()),
  };
}
