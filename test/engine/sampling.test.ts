import test from 'node:test';
import assert from 'node:assert/strict';
import { candidates, logSumExp, sampleToken, checkSamplingParams } from '../../src/engine/sampling.ts';
import { Rng } from '../../src/util/random.ts';

// A known distribution: p = [0.5, 0.25, 0.15, 0.1] (logits = log p, shuffled ids to avoid order luck).
const P = [0.15, 0.5, 0.1, 0.25];
const logits = Float32Array.from(P, Math.log);

function frequencies(params: { temperature: number; topK: number; topP: number }, n = 40000, seed = 11): number[] {
  const rng = new Rng(seed);
  const counts = new Array(P.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, params, rng)]++;
  return counts.map((c) => c / n);
}

/** |observed − expected| within 5 standard errors of a binomial proportion (n = 40000). */
function assertClose(observed: number[], expected: number[]) {
  observed.forEach((o, i) => {
    const se = Math.sqrt(Math.max(expected[i] * (1 - expected[i]), 1e-9) / 40000);
    assert.ok(Math.abs(o - expected[i]) <= 5 * se + 1e-12, `token ${i}: observed ${o}, expected ${expected[i]}`);
  });
}

const normalise = (xs: number[]) => xs.map((x) => x / xs.reduce((a, b) => a + b, 0));

test('temperature 1 samples the softmax; temperature τ samples p^(1/τ) renormalised', () => {
  assertClose(frequencies({ temperature: 1, topK: 0, topP: 1 }), P);
  assertClose(frequencies({ temperature: 0.5, topK: 0, topP: 1 }), normalise(P.map((p) => p ** 2)));
  assertClose(frequencies({ temperature: 2, topK: 0, topP: 1 }), normalise(P.map((p) => p ** 0.5)));
});

test('temperature 0 is greedy', () => {
  assert.deepEqual(frequencies({ temperature: 0, topK: 0, topP: 1 }, 100), [0, 1, 0, 0]);
});

test('top-p keeps the smallest most-likely set reaching p, then renormalises', () => {
  // sorted: 0.5 (id1), 0.25 (id3), 0.15 (id0), 0.1 (id2)
  assert.deepEqual(candidates(logits, 0, 0.5).ids, [1]);
  assert.deepEqual(candidates(logits, 0, 0.7).ids, [1, 3]);
  assert.deepEqual(candidates(logits, 0, 0.8).ids, [0, 1, 3]);
  assert.deepEqual(candidates(logits, 0, 1).ids, [0, 1, 2, 3]);
  assertClose(frequencies({ temperature: 1, topK: 0, topP: 0.8 }), [0.15 / 0.9, 0.5 / 0.9, 0, 0.25 / 0.9]);
});

test('top-k keeps the k most likely; top-p then applies to the renormalised top-k', () => {
  assertClose(frequencies({ temperature: 1, topK: 2, topP: 1 }), [0, 0.5 / 0.75, 0, 0.25 / 0.75]);
  // top-2 renormalised: 2/3, 1/3 → top-p 0.6 keeps only the first
  assert.deepEqual(candidates(logits, 2, 0.6).ids, [1]);
  assert.deepEqual(candidates(logits, 2, 0.7).ids, [1, 3]);
});

test('on a 50k vocabulary the windowed top-p/top-k equal a full sort', () => {
  const rng = new Rng(3);
  const V = 50000;
  const z = Float64Array.from({ length: V }, () => rng.normal() * 3);
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => z[b] - z[a] || a - b);
  const m = z[order[0]];
  const total = order.reduce((s, i) => s + Math.exp(z[i] - m), 0);
  for (const topP of [0.5, 0.9, 0.99]) {
    let cum = 0;
    let n = 0;
    while (cum < topP * total) cum += Math.exp(z[order[n++]] - m);
    assert.deepEqual(candidates(z, 0, topP).ids, order.slice(0, n).sort((a, b) => a - b), `top-p ${topP}`);
  }
  assert.deepEqual(candidates(z, 40, 1).ids, order.slice(0, 40).sort((a, b) => a - b));
  // near-uniform logits (a random-weight model): the nucleus is most of the vocabulary
  const flat = Float64Array.from({ length: V }, () => rng.normal() * 0.01);
  const flatOrder = Array.from({ length: V }, (_, i) => i).sort((a, b) => flat[b] - flat[a] || a - b);
  const fm = flat[flatOrder[0]];
  const ftotal = flatOrder.reduce((s, i) => s + Math.exp(flat[i] - fm), 0);
  let fcum = 0;
  let fn = 0;
  while (fcum < 0.9 * ftotal) fcum += Math.exp(flat[flatOrder[fn++]] - fm);
  assert.deepEqual(candidates(flat, 0, 0.9).ids, flatOrder.slice(0, fn).sort((a, b) => a - b));
});

test('logSumExp is stable for large logits', () => {
  assert.ok(Math.abs(logSumExp([1000, 1000]) - (1000 + Math.log(2))) < 1e-9);
});

test('bad sampling parameters are refused by name', () => {
  assert.throws(() => checkSamplingParams({ temperature: -1, topK: 0, topP: 1 }), /temperature/);
  assert.throws(() => checkSamplingParams({ temperature: 1, topK: 0, topP: 0 }), /top-p/);
  assert.throws(() => checkSamplingParams({ temperature: 1, topK: 1.5, topP: 1 }), /top-k/);
});
