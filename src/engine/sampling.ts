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

/** log Σ exp(row), in float64. */
export function logSumExp(row: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > m) m = row[i];
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i] - m);
  return m + Math.log(s);
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
  let m = -Infinity;
  for (let i = 0; i < V; i++) if (z[i] > m) m = z[i];
  const k = topK > 0 && topK < V ? topK : V;
  // Sort (natively, values only) a window of scaled logits near the max, widened until it holds the
  // top-k tokens and the nucleus mass; the cut is then a threshold on z.
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
  const ids: number[] = [];
  const weights: number[] = [];
  for (let i = 0; i < V; i++) {
    if (z[i] >= threshold) {
      ids.push(i);
      weights.push(Math.exp(z[i] - m));
    }
  }
  return { ids, weights };
}

/** Draws the next token from one row of raw logits. */
export function sampleToken(logits: ArrayLike<number>, p: SamplingParams, rng: Rng): number {
  if (p.temperature === 0) return argmax(logits);
  const V = logits.length;
  const invT = 1 / p.temperature;
  const noCut = (p.topK === 0 || p.topK >= V) && p.topP >= 1;
  if (noCut) {
    // plain softmax draw over the whole vocabulary, in id order
    let m = -Infinity;
    for (let i = 0; i < V; i++) if (logits[i] > m) m = logits[i];
    let s = 0;
    for (let i = 0; i < V; i++) s += Math.exp((logits[i] - m) * invT);
    let u = rng.next() * s;
    for (let i = 0; i < V; i++) {
      u -= Math.exp((logits[i] - m) * invT);
      if (u < 0) return i;
    }
    return argmax(logits); // rounding left u ≥ 0 after the last term
  }
  const z = new Float64Array(V);
  for (let i = 0; i < V; i++) z[i] = logits[i] * invT;
  const { ids, weights } = candidates(z, p.topK, p.topP);
  let s = 0;
  for (const w of weights) s += w;
  let u = rng.next() * s;
  for (let j = 0; j < ids.length; j++) {
    u -= weights[j];
    if (u < 0) return ids[j];
  }
  return ids[0];
}
