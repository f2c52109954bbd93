import type { Rng } from '../util/random.ts';

/**
 * Next-token choice from one row of logits, the way transformers' logits warpers do it:
 * temperature, then top-k, then top-p (nucleus: the smallest set of most likely tokens whose
 * probability reaches top_p, at least one token), then one draw from the renormalised rest.
 * temperature 0 means greedy (argmax, ties to the lowest id).
 */
export interface SamplingParams {
  temperature: number;
  /** 0 or ≥ vocab: no top-k cut. */
  topK: number;
  /** 1: no nucleus cut. */
  topP: number;
}

export function checkSamplingParams(p: SamplingParams): void {
  if (!(p.temperature >= 0) || !Number.isFinite(p.temperature)) throw new Error(`sampling: temperature must be ≥ 0, got ${p.temperature}`);
  if (!Number.isInteger(p.topK) || p.topK < 0) throw new Error(`sampling: top-k must be an integer ≥ 0, got ${p.topK}`);
  if (!(p.topP > 0 && p.topP <= 1)) throw new Error(`sampling: top-p must be in (0, 1], got ${p.topP}`);
}

/** log Σ exp(row), in float64, to within ~1e-14 relative (the terms by `expNonPositive`). */
export function logSumExp(row: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > m) m = row[i];
  if (!Number.isFinite(m)) return m;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += expNonPositive(row[i] - m);
  return m + Math.log(s);
}

/** exp(−k/16) for k in [0, EXP_TABLE_SIZE): the table of expNonPositive's range reduction. */
const EXP_TABLE_SIZE = 11936; // 16 × 746: below −746 exp is 0 in float64
const EXP_TABLE = Float64Array.from({ length: EXP_TABLE_SIZE }, (_, k) => Math.exp(-k / 16));

/**
 * exp(x) for x ≤ 0 to within ~1e-14 relative, several times cheaper than Math.exp (a table lookup and
 * an inlined degree-6 polynomial on |d| ≤ 1/32): for the sampler's sums over the whole vocabulary.
 * Not bit-equal to Math.exp: where a draw depends on those bits, callers check a margin (sampleToken).
 */
export function expNonPositive(x: number): number {
  const y = -16 * x;
  if (!(y >= -0.5 && y < EXP_TABLE_SIZE - 0.5)) return y > 0 ? 0 : Math.exp(x); // far below (−∞ too): 0; x > 1/32 or NaN: Math.exp
  const k = (y + 0.5) | 0; // round(y) (Math.round is several times slower)
  const d = x + k / 16; // |d| ≤ 1/32
  return EXP_TABLE[k] * (1 + d * (1 + d * (1 / 2 + d * (1 / 6 + d * (1 / 24 + d * (1 / 120 + d * (1 / 720)))))));
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/**
 * The tokens that survive top-k/top-p for scaled logits z (= logits / temperature), in id order,
 * with unnormalised weights exp(z − max). As in transformers, a token tied with the last one kept
 * is kept too. Exposed for tests of the semantics.
 */
export function candidates(z: ArrayLike<number>, topK: number, topP: number): { ids: number[]; weights: number[] } {
  const V = z.length;
  const m = maxOf(z);
  const e = expShifted(z, m, scratch(1, V));
  const threshold = cutThreshold(z, e, m, topK, topP);
  const ids: number[] = [];
  const weights: number[] = [];
  for (let i = 0; i < V; i++) {
    if (z[i] >= threshold) {
      ids.push(i);
      weights.push(e[i]);
    }
  }
  return { ids, weights };
}

/**
 * The top-k/top-p cut as a threshold on z: tokens with z ≥ threshold are kept (−Infinity: all).
 * `e[i]` must hold exp(z[i] − m), m = max z, to within ~1e-13 relative.
 *
 * The cut is defined by `thresholdBySort` (a sort of the values near the max, then a running sum in
 * descending order); this finds the same threshold in linear time. `e` may come from expNonPositive
 * (≤ ~1e-14 relative error): that too is far inside CROSSING_MARGIN. Top-k: a quickselect of the k
 * largest values, then the same sums over them sorted. Top-p alone: the running-sum crossing is
 * located through a histogram of z (bucket masses), and only the crossing bucket is sorted. Those
 * sums are added in another order than the reference's, so they differ from it by at most
 * (V + buckets)·2⁻⁵³·total; a crossing closer than CROSSING_MARGIN·total to the target (which that
 * rounding could move to a neighbouring value) is left to the reference, so the result is the
 * reference's, bit for bit, always.
 */
export function cutThreshold(z: ArrayLike<number>, e: ArrayLike<number>, m: number, topK: number, topP: number): number {
  const V = z.length;
  const k = topK > 0 && topK < V ? topK : V;
  if (k === V && topP >= 1) return -Infinity;
  if (!Number.isFinite(m) || V > MAX_FAST_VOCAB) return thresholdBySort(z, topK, topP);
  if (k < V) return topKThreshold(z, m, k, topP) ?? thresholdBySort(z, topK, topP);
  return nucleusThreshold(z, e, m, topP) ?? thresholdBySort(z, topK, topP);
}

/** Relative gap to the target a fast top-p crossing must clear (≫ (V + buckets)·2⁻⁵³ for V ≤ MAX_FAST_VOCAB). */
const CROSSING_MARGIN = 1e-9;
const MAX_FAST_VOCAB = 1 << 22;
const BUCKETS = 4096;
/** The reference widens its window up to this width below the max (the first width > 1e4). */
const FULL_WINDOW = 16384;

/** Top-k (then top-p over the renormalised top-k), as the reference computes it over its sorted window. */
function topKThreshold(z: ArrayLike<number>, m: number, k: number, topP: number): number | undefined {
  const V = z.length;
  // The reference's window stops at the first width holding k values, else at FULL_WINDOW: its top
  // values are the k largest of the values ≥ m − FULL_WINDOW (fewer when fewer are there).
  const pool = scratch(2, V);
  let n = 0;
  for (let i = 0; i < V; i++) if (z[i] >= m - FULL_WINDOW) pool[n++] = z[i];
  const inK = Math.min(k, n);
  selectLargest(pool, n, inK);
  const top = pool.subarray(n - inK, n).sort(); // ascending, as values[n-inK..n-1] of the reference
  const kth = top[0];
  if (topP >= 1) return kth;
  let total = 0;
  for (let j = 0; j < inK; j++) total += Math.exp(top[j] - m);
  let cum = 0;
  for (let j = inK - 1; j >= 0; j--) {
    cum += Math.exp(top[j] - m);
    if (cum >= topP * total) return top[j];
  }
  return kth;
}

/** Top-p alone: the crossing value, or undefined when it lies too close to call (see cutThreshold). */
function nucleusThreshold(z: ArrayLike<number>, e: ArrayLike<number>, m: number, topP: number): number | undefined {
  let total = 0;
  for (let i = 0; i < z.length; i++) total += e[i]; // id order, as the reference
  return nucleusCrossing(z, e, z.length, m, total, topP);
}

/**
 * The top-p crossing among z[0..n) (weights e): all of z, or only the values near the max, when
 * `total` is the mass of the whole row (the crossing is then found if those values hold it).
 * Undefined when it lies too close to call, or beyond the values given.
 */
function nucleusCrossing(z: ArrayLike<number>, e: ArrayLike<number>, n: number, m: number, total: number, topP: number): number | undefined {
  const target = topP * total;
  const margin = CROSSING_MARGIN * total;
  if (!(total > 0) || !Number.isFinite(total)) return undefined;
  let lo = m;
  for (let i = 0; i < n; i++) if (z[i] < lo && z[i] > -Infinity) lo = z[i];
  // bucket b holds z with (m − z)·scale in [b, b+1): monotone in z, so ties share a bucket
  const scale = m > lo ? BUCKETS / (m - lo) : 0;
  const mass = new Float64Array(BUCKETS);
  const count = new Int32Array(BUCKETS);
  const bucket = bucketScratch(n);
  for (let i = 0; i < n; i++) {
    const f = (m - z[i]) * scale;
    const b = f < BUCKETS ? f | 0 : BUCKETS - 1; // also NaN (−∞ · 0) and −∞
    bucket[i] = b;
    mass[b] += e[i];
    count[b]++;
  }
  let before = 0;
  let b = 0;
  while (b < BUCKETS && before + mass[b] < target) before += mass[b++];
  if (b === BUCKETS) return undefined;
  const inBucket = scratch(2, count[b]);
  let k = 0;
  for (let i = 0; i < n; i++) if (bucket[i] === b) inBucket[k++] = z[i];
  const values = inBucket.sort();
  for (let j = k - 1; j >= 0; ) {
    const v = values[j];
    let end = before;
    for (; j >= 0 && values[j] === v; j--) end += Math.exp(v - m);
    if (end >= target) return before < target - margin && end >= target + margin ? v : undefined;
    before = end;
  }
  return undefined;
}

let bucketBuffer = new Uint16Array(0);
function bucketScratch(n: number): Uint16Array {
  if (bucketBuffer.length < n) bucketBuffer = new Uint16Array(n);
  return bucketBuffer;
}

/** Rearranges a[0..n) so that its `count` largest values occupy a[n−count..n) (quickselect). */
function selectLargest(a: Float64Array, n: number, count: number): void {
  if (count <= 0 || count >= n) return;
  const target = n - count; // a[target] ends as the count-th largest, everything after it ≥ it
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    const mid = (lo + hi) >>> 1;
    // median of three as the pivot
    const x = a[lo], y = a[mid], w = a[hi];
    const pivot = x < y ? (y < w ? y : x < w ? w : x) : x < w ? x : y < w ? w : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return;
  }
}

/**
 * The reference cut (what `cutThreshold` reproduces): sort (natively, values only) a window of scaled
 * logits near the max, widened until it holds the top-k tokens and the nucleus mass; the cut is then
 * a threshold on z. Exposed for tests.
 */
export function thresholdBySort(z: ArrayLike<number>, topK: number, topP: number): number {
  const V = z.length;
  const m = maxOf(z);
  const k = topK > 0 && topK < V ? topK : V;
  let threshold = -Infinity;
  for (let width = 16; ; width *= 2) {
    const complete = width > 1e4; // beyond e^-1e4 weights are 0 in float64
    let n = 0;
    for (let i = 0; i < V; i++) if (z[i] >= m - width) n++;
    if (n < k && !complete && n < V) continue;
    const values = new Float64Array(n);
    n = 0;
    for (let i = 0; i < V; i++) if (z[i] >= m - width) values[n++] = z[i];
    values.sort(); // ascending
    const inK = Math.min(k, n); // values[n-inK .. n-1] are the top-k within the window
    const kth = values[n - inK];
    if (topP >= 1) {
      if (k < V) threshold = kth;
      break;
    }
    let total = 0;
    if (k < V) for (let j = n - inK; j < n; j++) total += Math.exp(values[j] - m); // top-k renormalises first
    else for (let i = 0; i < V; i++) total += Math.exp(z[i] - m);
    let cum = 0;
    let cut = -Infinity;
    for (let j = n - 1; j >= n - inK; j--) {
      cum += Math.exp(values[j] - m);
      if (cum >= topP * total) {
        cut = values[j];
        break;
      }
    }
    if (cut > -Infinity || complete || n === V || k < V) {
      threshold = cut > -Infinity ? cut : kth;
      break;
    }
  }
  return threshold;
}

function maxOf(z: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < z.length; i++) if (z[i] > m) m = z[i];
  return m;
}

/** out[i] = exp(z[i] − m) */
function expShifted(z: ArrayLike<number>, m: number, out: Float64Array): Float64Array {
  for (let i = 0; i < z.length; i++) out[i] = Math.exp(z[i] - m);
  return out;
}

/** Per-thread scratch buffers (sampling is synchronous), grown on demand; slot 0: z, 1: exp, 2: selection. */
const scratchBuffers: Float64Array[] = [];
function scratch(slot: number, n: number): Float64Array {
  let buf = scratchBuffers[slot];
  if (!buf || buf.length < n) buf = scratchBuffers[slot] = new Float64Array(Math.max(n, 1024));
  return buf.subarray(0, n);
}

/**
 * Draws the next token from one row of raw logits: the token today's reference draw (weights
 * exp(z − max) by Math.exp, summed in id order, u = r·Σ, the first kept token where u − running sum
 * < 0) picks, bit for bit. The weights come from `expNonPositive` (one cheap pass for the cut's
 * masses and the draw); a draw that lands within DRAW_MARGIN of a boundary, where those approximate
 * weights could pick a neighbour, is redone with Math.exp.
 */
export function sampleToken(logits: ArrayLike<number>, p: SamplingParams, rng: Rng): number {
  return sampleWithLogProb(logits, p, rng).token;
}

/**
 * sampleToken, and the token's untempered log-prob logits[token] − logSumExp(logits) (the same value,
 * bit for bit), its exp terms summed in the pass that makes the draw's weights.
 */
export function sampleWithLogProb(logits: ArrayLike<number>, p: SamplingParams, rng: Rng): { token: number; logProb: number } {
  if (p.temperature === 0) {
    const token = argmax(logits);
    return { token, logProb: logits[token] - logSumExp(logits) };
  }
  const V = logits.length;
  const invT = 1 / p.temperature;
  const noTopK = p.topK === 0 || p.topK >= V;
  const noCut = noTopK && p.topP >= 1;
  const r = rng.next();
  let lmax = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > lmax) lmax = logits[i];
  if (noTopK && !noCut && Number.isFinite(lmax) && V <= MAX_FAST_VOCAB) {
    const near = nucleusDrawNearMax(logits, lmax, invT, p.topP, r);
    if (near.token >= 0) return { token: near.token, logProb: logits[near.token] - near.lse };
  }
  const z = scratch(0, V);
  const e = scratch(1, V);
  // z = logits / T (the cut and the weights exp(z − m)), or for the plain draw (logit − max logit)/T
  const m = noCut ? 0 : lmax * invT; // = max z: rounding is monotone
  if (noCut) for (let i = 0; i < V; i++) z[i] = (logits[i] - lmax) * invT;
  else for (let i = 0; i < V; i++) z[i] = logits[i] * invT;
  let sum = 0; // Σ exp(logit − max logit), as logSumExp adds it
  for (let i = 0; i < V; i++) {
    e[i] = expNonPositive(z[i] - m);
    sum += expNonPositive(logits[i] - lmax);
  }
  const lse = Number.isFinite(lmax) ? lmax + Math.log(sum) : lmax;
  const threshold = noCut ? -Infinity : cutThreshold(z, e, m, p.topK, p.topP);
  let token = drawWithMargin(z, e, V, threshold, r, (j) => j);
  if (token < 0) token = referenceDraw(z, m, threshold, r, noCut ? argmax(logits) : -1);
  return { token, logProb: logits[token] - lse };
}

/**
 * Values of z = logit / T below the max by more than this are never in a nucleus found near the max
 * (their weights, < e^-16 each, are counted only in the row's total).
 */
const NEAR_MAX_WINDOW = 16;

/**
 * Top-p alone, in one pass over the row: the lse terms, the row's total weight, and the tokens with
 * z ≥ max z − NEAR_MAX_WINDOW (a few hundred of 49k for a language model), in id order; the crossing
 * and the draw then run over those only. The kept set lies among them whenever they hold the nucleus,
 * and the sums are the full path's, term for term, so the draw is the full path's token. Token −1
 * (the caller takes the full path) when they do not, or the crossing or the draw is too close to call.
 */
function nucleusDrawNearMax(logits: ArrayLike<number>, lmax: number, invT: number, topP: number, r: number): { token: number; lse: number } {
  const V = logits.length;
  const m = lmax * invT;
  const floor = m - NEAR_MAX_WINDOW;
  const z = scratch(0, V);
  const e = scratch(1, V);
  const ids = idScratch(V);
  let n = 0;
  let sum = 0;
  let total = 0;
  for (let i = 0; i < V; i++) {
    const x = logits[i];
    sum += expNonPositive(x - lmax);
    const zi = x * invT;
    const ei = expNonPositive(zi - m);
    total += ei;
    if (zi >= floor) {
      z[n] = zi;
      e[n] = ei;
      ids[n++] = i;
    }
  }
  const lse = lmax + Math.log(sum);
  const threshold = nucleusCrossing(z, e, n, m, total, topP);
  if (threshold === undefined) return { token: -1, lse };
  return { token: drawWithMargin(z, e, n, threshold, r, (j) => ids[j]), lse };
}

let idBuffer = new Int32Array(0);
function idScratch(n: number): Int32Array {
  if (idBuffer.length < n) idBuffer = new Int32Array(n);
  return idBuffer;
}

/** The reference draw, with Math.exp weights; `fallback` when rounding left u ≥ 0 after the last term (−1: the first kept token). */
function referenceDraw(z: Float64Array, m: number, threshold: number, r: number, fallback: number): number {
  const V = z.length;
  const e = scratch(1, V);
  for (let i = 0; i < V; i++) e[i] = Math.exp(z[i] - m);
  let s = 0;
  let first = -1;
  for (let i = 0; i < V; i++) {
    if (z[i] >= threshold) {
      s += e[i];
      if (first < 0) first = i;
    }
  }
  let u = r * s;
  for (let i = 0; i < V; i++) {
    if (z[i] >= threshold) {
      u -= e[i];
      if (u < 0) return i;
    }
  }
  return fallback >= 0 ? fallback : first;
}

/**
 * Relative distance to a boundary that a draw on approximate weights must clear to be the reference's:
 * their error (~1e-14 relative) plus the rounding of two id-order sums of V terms (≤ V·2⁻⁵³ relative,
 * 5e-12 at V = 49k) is far below it.
 */
const DRAW_MARGIN = 1e-9;

/**
 * The draw on weights e over the entries j < n with z[j] ≥ threshold (token id(j), ids ascending in j),
 * or −1 when it lies within DRAW_MARGIN of a boundary.
 */
function drawWithMargin(z: Float64Array, e: Float64Array, n: number, threshold: number, r: number, id: (j: number) => number): number {
  let s = 0;
  for (let j = 0; j < n; j++) if (z[j] >= threshold) s += e[j];
  if (!(s > 0) || !Number.isFinite(s) || n > MAX_FAST_VOCAB) return -1;
  const margin = DRAW_MARGIN * s;
  let u = r * s;
  for (let j = 0; j < n; j++) {
    if (z[j] >= threshold) {
      const before = u;
      u -= e[j];
      if (u < 0) return before > margin && u < -margin ? id(j) : -1;
    }
  }
  return -1;
}
