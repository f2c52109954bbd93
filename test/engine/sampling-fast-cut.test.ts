import test from 'node:test';
import assert from 'node:assert/strict';
import { candidates, cutThreshold, expNonPositive, logSumExp, sampleToken, sampleWithLogProb, thresholdBySort } from '../../src/engine/sampling.ts';
import { Rng } from '../../src/util/random.ts';

/**
 * The linear-time top-k/top-p cut (cutThreshold) against (a) the windowed sort it replaces and (b) an
 * independent full sort written here, on random distributions of many shapes: it must give the
 * same threshold bit for bit, and sampleToken the same draws as a sampler built on the full sort.
 */

/**
 * Full-sort reference: threshold on z for top-k then top-p (transformers' order), ties kept. Values
 * more than 16384 below the max (weight exactly 0 in float64, e.g. −∞) are not candidates, as in
 * the sampler since its windowed sort.
 */
function fullSortThreshold(z: ArrayLike<number>, topK: number, topP: number, sorted = descending(z)): number {
  const V = z.length;
  const { desc, m } = sorted;
  const k = topK > 0 && topK < V ? Math.min(topK, desc.length) : V;
  if (topP >= 1) return k < V ? desc[k - 1] : -Infinity;
  let total = 0;
  if (k < V) for (let j = k - 1; j >= 0; j--) total += Math.exp(desc[j] - m); // ascending over the top-k
  else for (let i = 0; i < V; i++) total += Math.exp(z[i] - m); // id order
  let cum = 0;
  for (let j = 0; j < Math.min(k, desc.length); j++) {
    cum += Math.exp(desc[j] - m);
    if (cum >= topP * total) return desc[j];
  }
  return desc[Math.min(k, desc.length) - 1];
}

function descending(z: ArrayLike<number>): { desc: Float64Array; m: number } {
  let m = -Infinity;
  for (let i = 0; i < z.length; i++) if (z[i] > m) m = z[i];
  return { desc: Float64Array.from(z).filter((x) => x >= m - 16384).sort().reverse(), m };
}

function fastThreshold(z: ArrayLike<number>, topK: number, topP: number): number {
  let m = -Infinity;
  for (let i = 0; i < z.length; i++) if (z[i] > m) m = z[i];
  const e = Float64Array.from(z, (x) => Math.exp(x - m));
  return cutThreshold(z, e, m, topK, topP);
}

/** Draws from the kept set of the full-sort reference, in id order (what sampleToken has always done). */
function referenceSampler(logits: Float32Array, temperature: number, topK: number, topP: number): (rng: Rng) => number {
  const z = Float64Array.from(logits, (x) => x * (1 / temperature));
  const threshold = fullSortThreshold(z, topK, topP);
  let m = -Infinity;
  for (const x of z) if (x > m) m = x;
  const ids: number[] = [];
  const weights: number[] = [];
  const noCut = topK === 0 && topP >= 1; // today's plain draw: weights exp((logit − max logit)/T)
  let lmax = -Infinity;
  for (const x of logits) if (x > lmax) lmax = x;
  z.forEach((x, i) => {
    if (x >= threshold) {
      ids.push(i);
      weights.push(noCut ? Math.exp((logits[i] - lmax) * (1 / temperature)) : Math.exp(x - m));
    }
  });
  let s = 0;
  for (const w of weights) s += w;
  return (rng) => {
    let u = rng.next() * s;
    for (let j = 0; j < ids.length; j++) {
      u -= weights[j];
      if (u < 0) return ids[j];
    }
    return noCut ? argmaxOf(logits) : ids[0];
  };
}

function argmaxOf(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Logit rows of many shapes: flat (random-weight models), peaked, heavy ties, −∞ entries, tiny vocabularies. */
function* distributions(rng: Rng): Generator<{ name: string; z: Float32Array }> {
  for (const V of [3, 17, 1000, 49152]) {
    for (const scale of [0.01, 0.3, 1, 3, 10]) {
      yield { name: `V=${V} normal×${scale}`, z: Float32Array.from({ length: V }, () => rng.normal() * scale) };
    }
    yield { name: `V=${V} quantised (ties)`, z: Float32Array.from({ length: V }, () => Math.round(rng.normal() * 4) / 4) };
    yield { name: `V=${V} all equal`, z: new Float32Array(V).fill(0.5) };
    yield { name: `V=${V} −∞ half`, z: Float32Array.from({ length: V }, (_, i) => (i % 2 === 0 ? -Infinity : rng.normal() * 2)) };
    yield { name: `V=${V} one spike`, z: Float32Array.from({ length: V }, (_, i) => (i === V >> 1 ? 30 : rng.normal())) };
  }
}

test('the linear-time cut equals the windowed sort and a full sort, bit for bit', () => {
  const rng = new Rng(2024);
  let cases = 0;
  for (const { name, z } of distributions(rng)) {
    const V = z.length;
    const sorted = descending(z);
    const big = V > 1000; // fewer combinations on the 49k vocabulary, to keep the test fast
    for (const topK of big ? [0, 3, 40, V - 1] : [0, 1, 2, 5, 40, V - 1, V, V + 3]) {
      for (const topP of big ? [1, 0.95, 0.9, 0.3, rng.next()] : [1, 0.999, 0.95, 0.9, 0.5, 0.1, 0.01, rng.next()]) {
        if (topK > 40 && topK < V - 1) continue;
        const want = fullSortThreshold(z, topK, topP, sorted);
        const got = fastThreshold(z, topK, topP);
        assert.equal(got, want, `${name} top-k ${topK} top-p ${topP}: fast ${got}, full sort ${want}`);
        if (!big || topK === 0) assert.equal(thresholdBySort(z, topK, topP), want, `${name} top-k ${topK} top-p ${topP}: windowed sort`);
        cases++;
      }
    }
  }
  assert.ok(cases > 400, `${cases} cases`);
});

test('crossings exactly on a boundary (left to the reference) keep the reference cut', () => {
  // p = [0.5, 0.25, 0.125, 0.125]: top-p 0.75 is reached exactly after two tokens, 0.875 after three
  const z = Float64Array.from([0.125, 0.5, 0.25, 0.125], Math.log);
  for (const topP of [0.5, 0.75, 0.875, 0.75 + 1e-12, 0.75 - 1e-12]) {
    assert.equal(fastThreshold(z, 0, topP), fullSortThreshold(z, 0, topP), `top-p ${topP}`);
  }
  assert.deepEqual(candidates(z, 0, 0.75).ids, [1, 2]);
  assert.deepEqual(candidates(z, 0, 0.75 + 1e-12).ids, [0, 1, 2, 3]); // the tie at 0.125 comes in whole
});

test('sampleToken draws the same tokens as a sampler on the full sort, for the same seeds', () => {
  const rng = new Rng(7);
  for (const { name, z } of distributions(rng)) {
    if (z.length < 1000) continue;
    for (const params of [
      { temperature: 0.7, topK: 0, topP: 0.9 },
      { temperature: 1, topK: 50, topP: 0.95 },
      { temperature: 1.3, topK: 20, topP: 1 },
      { temperature: 0.8, topK: 0, topP: 1 },
    ]) {
      const a = new Rng(99);
      const b = new Rng(99);
      const reference = referenceSampler(z, params.temperature, params.topK, params.topP);
      for (let draw = 0; draw < 20; draw++) {
        const want = reference(b);
        assert.equal(sampleToken(z, params, a), want, `${name} ${JSON.stringify(params)} draw ${draw}`);
      }
    }
  }
});

test('expNonPositive is exp to 1e-14 relative on (−746, 0], 0 below, and logSumExp stays within 1e-13 of the Math.exp sum', () => {
  const rng = new Rng(11);
  let worst = 0;
  for (let i = 0; i < 200000; i++) {
    const x = i < 1000 ? -i / 1000 : -rng.next() * (i % 2 ? 40 : 745);
    const want = Math.exp(x);
    if (want > 1e-300) worst = Math.max(worst, Math.abs(expNonPositive(x) - want) / want);
  }
  assert.ok(worst < 1e-14, `worst relative error ${worst}`);
  assert.equal(expNonPositive(-Infinity), 0);
  assert.equal(expNonPositive(-800), 0);
  assert.equal(expNonPositive(0), 1);
  assert.ok(Number.isNaN(expNonPositive(NaN)));
  assert.equal(expNonPositive(0.5), Math.exp(0.5), 'outside the table: Math.exp');
  for (const scale of [0.05, 1, 10]) {
    const row = Float32Array.from({ length: 49152 }, () => rng.normal() * scale);
    let m = -Infinity;
    for (const x of row) if (x > m) m = x;
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    assert.ok(Math.abs(logSumExp(row) - (m + Math.log(s))) < 1e-13 * Math.abs(m + Math.log(s)) + 1e-13, `scale ${scale}`);
  }
  assert.equal(logSumExp([-Infinity, -Infinity]), -Infinity);
});

test('sampleWithLogProb: the token sampleToken draws and logits[token] − logSumExp(logits), bit for bit', () => {
  const rng = new Rng(5);
  for (const scale of [0.05, 2]) {
    const row = Float32Array.from({ length: 49152 }, () => rng.normal() * scale);
    for (const params of [{ temperature: 0.7, topK: 0, topP: 0.9 }, { temperature: 1, topK: 0, topP: 1 }, { temperature: 0, topK: 0, topP: 1 }, { temperature: 1.2, topK: 30, topP: 0.95 }]) {
      const a = new Rng(8);
      const b = new Rng(8);
      for (let draw = 0; draw < 5; draw++) {
        const got = sampleWithLogProb(row, params, a);
        const token = sampleToken(row, params, b);
        assert.equal(got.token, token, `${JSON.stringify(params)} draw ${draw}`);
        assert.equal(got.logProb, row[token] - logSumExp(row));
      }
    }
  }
});

test('a nucleus reaching below the near-max window (top-p 0.99 over a far tail) draws what the full sort draws', () => {
  // one token at 0 and 2^20 − 1 at about −16.5 (z − max below the 16 of the near-max pass): the tail
  // holds ~6% of the mass, so top-p 0.99 keeps tail tokens (the full path draws them), top-p 0.9 the spike alone
  const rng = new Rng(31);
  const V = 1 << 20;
  const z = Float32Array.from({ length: V }, (_, i) => (i === 4321 ? 0 : -16.5 + 0.1 * rng.normal()));
  assert.ok(candidates(z, 0, 0.99).ids.length > 1000, 'top-p 0.99 keeps tail tokens');
  assert.deepEqual(candidates(z, 0, 0.9).ids, [4321]);
  for (const topP of [0.99, 0.9]) {
    const params = { temperature: 1, topK: 0, topP };
    const reference = referenceSampler(z, 1, 0, topP);
    const a = new Rng(5);
    const b = new Rng(5);
    let tail = 0;
    for (let draw = 0; draw < 200; draw++) {
      const want = reference(b);
      if (want !== 4321) tail++;
      assert.equal(sampleToken(z, params, a), want, `top-p ${topP} draw ${draw}`);
    }
    if (topP === 0.99) assert.ok(tail > 3, `${tail} of 200 draws from the tail`);
  }
});
