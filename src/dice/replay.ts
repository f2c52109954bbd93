/**
 * Experience replay (paper §4.2, Alg. 1 line 5): the round's training set D_t mixes the generated
 * pairs D(α*) with offline pairs from D_offline, p_{D_t} = (1 − γ)·p_{D(α*)} + γ·p_{D_offline}.
 *
 * Counts, precisely. N (the paper's N in D_t = {(x^i, y_w^i, y_l^i)}_{i∈[N]}) is the size of the
 * mixed training set. It holds exactly ⌊γ·N⌋ offline pairs and N − ⌊γ·N⌋ generated pairs.
 *  - With `size` given, N = size (the paper fixes the set per round: 9.6k pairs = 300 steps × 32).
 *  - Otherwise N is the largest size the available pairs allow: N − ⌊γN⌋ ≤ #generated and
 *    ⌊γN⌋ ≤ #eligible offline. For γ < 1 with enough offline pairs this uses every generated pair,
 *    like the official code (n_from_off = ⌊γ·n_from_gen/(1 − γ)⌋); for γ = 1 (the offline-DPO
 *    baselines) it is every eligible offline pair.
 * ⌊γN⌋ is computed as ⌊γN + 1e−9⌋ so that e.g. γ = 0.29, N = 100 gives 29 despite binary rounding.
 *
 * Offline pairs come from prompts disjoint from the round's: like the official code, offline pairs
 * whose prompt is among this round's prompts are excluded before sampling. Both parts are drawn
 * without replacement with seeded Rngs (src/util/random.ts), then the mix is shuffled.
 */
import { EpochBatcher } from '../util/epoch-batcher.ts';
import { deriveSeed, Rng } from '../util/random.ts';

export type MixedPair<G, O> = { source: 'generated'; pair: G } | { source: 'offline'; pair: O };

export interface ReplayOptions<G, O> {
  generated: readonly G[];
  offline: readonly O[];
  /** Fraction of the mixed set drawn from D_offline, in [0, 1] (paper default 0.5). */
  gamma: number;
  promptOfGenerated: (pair: G) => string;
  promptOfOffline: (pair: O) => string;
  /** The round's prompts; offline pairs on these prompts are excluded. Default: the generated pairs' prompts. */
  roundPrompts?: Iterable<string>;
  /** N, the size of the mixed set (default: the largest the available pairs allow, see above). */
  size?: number;
  seed: number;
  /** Labels the round in the seed derivation so each round draws differently. */
  round?: number | string;
}

export interface ReplayMix<G, O> {
  pairs: Array<MixedPair<G, O>>;
  /** N = offlineCount + generatedCount; offlineCount = ⌊γN⌋. */
  size: number;
  offlineCount: number;
  generatedCount: number;
  generatedAvailable: number;
  /** Offline pairs left after excluding the round's prompts, and how many were excluded. */
  offlineEligible: number;
  offlineExcluded: number;
}

/** ⌊γ·N⌋, guarded against binary rounding just below an integer. */
export function offlineShare(gamma: number, size: number): number {
  return Math.floor(gamma * size + 1e-9);
}

/** The largest N with N − ⌊γN⌋ ≤ generatedAvailable and ⌊γN⌋ ≤ offlineAvailable (both shares grow with N). */
export function largestMixSize(gamma: number, generatedAvailable: number, offlineAvailable: number): number {
  checkGamma(gamma);
  const fits = (n: number) => n - offlineShare(gamma, n) <= generatedAvailable && offlineShare(gamma, n) <= offlineAvailable;
  // Both shares rise by 0 or 1 per unit of N, so the feasible sizes are a prefix [0, N_max]; bracket and bisect.
  let hi = generatedAvailable + offlineAvailable + 1;
  if (fits(hi)) throw new Error('largestMixSize: internal bound violated');
  let lo = 0;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

export function mixReplay<G, O>(options: ReplayOptions<G, O>): ReplayMix<G, O> {
  const { generated, offline, gamma } = options;
  checkGamma(gamma);
  const roundPrompts = new Set(options.roundPrompts ?? generated.map(options.promptOfGenerated));
  const eligible = offline.filter((p) => !roundPrompts.has(options.promptOfOffline(p)));

  let size: number;
  if (options.size === undefined) {
    size = largestMixSize(gamma, generated.length, eligible.length);
  } else {
    size = options.size;
    if (!(Number.isInteger(size) && size >= 0)) throw new Error(`replay: size must be a non-negative integer, got ${options.size}`);
  }
  const offlineCount = offlineShare(gamma, size);
  const generatedCount = size - offlineCount;
  if (generatedCount > generated.length) {
    throw new Error(
      `replay: a mix of ${size} pairs at γ=${gamma} needs ${generatedCount} generated pairs, only ${generated.length} exist ` +
        '(lower size, raise γ, or generate more prompts)',
    );
  }
  if (offlineCount > eligible.length) {
    throw new Error(
      `replay: a mix of ${size} pairs at γ=${gamma} needs ${offlineCount} offline pairs, only ${eligible.length} are eligible ` +
        `(${offline.length - eligible.length} of ${offline.length} share a prompt with this round)`,
    );
  }

  const label = options.round ?? 0;
  const pairs: Array<MixedPair<G, O>> = [
    ...sampleWithoutReplacement(generated, generatedCount, new Rng(deriveSeed(options.seed, 'replay', label, 'generated'))).map(
      (pair) => ({ source: 'generated' as const, pair }),
    ),
    ...sampleWithoutReplacement(eligible, offlineCount, new Rng(deriveSeed(options.seed, 'replay', label, 'offline'))).map(
      (pair) => ({ source: 'offline' as const, pair }),
    ),
  ];
  new Rng(deriveSeed(options.seed, 'replay', label, 'mix')).shuffle(pairs);
  return {
    pairs,
    size,
    offlineCount,
    generatedCount,
    generatedAvailable: generated.length,
    offlineEligible: eligible.length,
    offlineExcluded: offline.length - eligible.length,
  };
}

/** `count` distinct items in random order (partial Fisher–Yates over indices). */
export function sampleWithoutReplacement<T>(items: readonly T[], count: number, rng: Rng): T[] {
  if (count > items.length) throw new Error(`sampleWithoutReplacement: ${count} requested from ${items.length}`);
  const index = Array.from({ length: items.length }, (_, i) => i);
  const out: T[] = [];
  for (let i = 0; i < count; i++) {
    const j = i + rng.int(items.length - i);
    [index[i], index[j]] = [index[j], index[i]];
    out.push(items[index[i]]);
  }
  return out;
}

export interface BatchPlan<T> {
  /** `steps` batches of `batchSize` items each. */
  batches: T[][];
  /** Epochs begun (each a fresh seeded permutation of the items). */
  epochs: number;
  /** Items of the last epoch not trained on this round (N − S·B when N > S·B, else what the last partial epoch left). */
  unused: number;
}

/**
 * Cuts a training set of N items into S steps of B: S·B items taken from a stream of epochs, each
 * epoch a fresh seeded permutation of all N items. N ≥ S·B: one epoch, its first S·B items (the rest
 * wait for nothing — they are counted in `unused`). N < S·B: ⌈S·B / N⌉ epochs, each reshuffled; a
 * batch may span an epoch boundary, so with N < B a batch can hold an item twice.
 */
export function cutBatches<T>(items: readonly T[], options: { batchSize: number; steps: number; seed: number; round?: number | string }): BatchPlan<T> {
  const { batchSize, steps } = options;
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error(`cutBatches: batchSize must be a positive integer, got ${batchSize}`);
  if (!(Number.isInteger(steps) && steps >= 0)) throw new Error(`cutBatches: steps must be a non-negative integer, got ${steps}`);
  if (steps > 0 && items.length === 0) throw new Error(`cutBatches: ${steps} steps of ${batchSize} need items, got none`);
  if (steps === 0) return { batches: [], epochs: 0, unused: items.length };
  const batcher = new EpochBatcher((epoch) => new Rng(deriveSeed(options.seed, 'batches', options.round ?? 0, epoch)).shuffle([...items]), batchSize);
  const batches = Array.from({ length: steps }, () => batcher.next());
  return { batches, epochs: batcher.epochs, unused: batcher.remaining };
}

function checkGamma(gamma: number): void {
  if (!(gamma >= 0 && gamma <= 1)) throw new Error(`replay: gamma must be in [0, 1], got ${gamma}`);
}
