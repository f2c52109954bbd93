import test from 'node:test';
import assert from 'node:assert/strict';
import { cutBatches, largestMixSize, mixReplay } from '../../src/dice/replay.ts';

interface Pair { prompt: string; id: string }
const gen = (n: number, from = 0): Pair[] => Array.from({ length: n }, (_, i) => ({ prompt: `p${from + i}`, id: `g${from + i}` }));
const off = (n: number, from = 0): Pair[] => Array.from({ length: n }, (_, i) => ({ prompt: `p${from + i}`, id: `o${from + i}` }));
const mix = (generated: Pair[], offline: Pair[], gamma: number, extra: { size?: number; seed?: number; roundPrompts?: string[] } = {}) =>
  mixReplay({ generated, offline, gamma, promptOfGenerated: (p) => p.prompt, promptOfOffline: (p) => p.prompt, seed: extra.seed ?? 1, ...extra });

test('the mixed set holds exactly ⌊γ·N⌋ offline pairs (integer arithmetic check over many γ, N)', () => {
  for (const [num, den] of [[0, 1], [1, 10], [1, 4], [29, 100], [1, 3], [1, 2], [2, 3], [3, 4], [7, 10], [1, 1]]) {
    const gamma = num / den;
    for (const size of [0, 1, 7, 10, 33, 100, 301]) {
      const m = mix(gen(400), off(800, 1000), gamma, { size });
      const expectedOffline = Math.floor((num * size) / den);
      assert.equal(m.offlineCount, expectedOffline, `γ=${num}/${den} N=${size}`);
      assert.equal(m.pairs.filter((p) => p.source === 'offline').length, expectedOffline);
      assert.equal(m.pairs.length, size);
      assert.equal(m.generatedCount, size - expectedOffline);
    }
  }
});

test('default N uses every generated pair (as the official code) and is the largest feasible', () => {
  const m = mix(gen(100), off(1000, 1000), 0.5);
  assert.equal(m.size, 200);
  assert.equal(m.generatedCount, 100);
  assert.equal(m.offlineCount, 100);
  // Too few offline pairs: the offline share caps N.
  const capped = mix(gen(100), off(30, 1000), 0.5);
  assert.deepEqual([capped.size, capped.offlineCount, capped.generatedCount], [61, 30, 31]);
  for (let g = 0; g < 30; g++) {
    for (let o = 0; o < 30; o++) {
      const n = largestMixSize(0.3, g, o);
      const fits = (k: number) => k - Math.floor((3 * k) / 10) <= g && Math.floor((3 * k) / 10) <= o;
      assert.ok(fits(n) && !fits(n + 1), `g=${g} o=${o} n=${n}`);
    }
  }
  const offlineOnly = mix(gen(5), off(50, 1000), 1);
  assert.deepEqual([offlineOnly.size, offlineOnly.generatedCount], [50, 0]);
});

test('offline pairs never share a prompt with the round; draws are without replacement', () => {
  // Offline prompts p50..p249 overlap the generated p0..p99 on p50..p99.
  const m = mix(gen(100), off(200, 50), 0.5, { size: 150 });
  assert.equal(m.offlineExcluded, 50);
  assert.equal(m.offlineEligible, 150);
  const roundPrompts = new Set(gen(100).map((p) => p.prompt));
  const ids = m.pairs.map((p) => p.pair.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of m.pairs) if (p.source === 'offline') assert.ok(!roundPrompts.has(p.pair.prompt), p.pair.prompt);
  // Round prompts can be given explicitly (e.g. prompts whose groups were all filtered out still count).
  const explicit = mix(gen(10), off(20), 0.5, { roundPrompts: ['p0', 'p1', 'p2', 'p15'] });
  assert.equal(explicit.offlineExcluded, 4);
  assert.throws(() => mix(gen(100), off(200, 50), 0.5, { size: 400 }), /needs 200 generated pairs, only 100 exist/);
  assert.throws(() => mix(gen(100), off(120, 50), 0.5, { size: 160 }), /only 70 are eligible \(50 of 120 share a prompt/);
  assert.throws(() => mix(gen(1), off(1), 1.5), /gamma must be in \[0, 1\]/);
});

test('same seed → same mix; another seed or round → another', () => {
  const a = mix(gen(100), off(300, 500), 0.5, { seed: 7 }).pairs.map((p) => p.pair.id);
  const b = mix(gen(100), off(300, 500), 0.5, { seed: 7 }).pairs.map((p) => p.pair.id);
  const c = mix(gen(100), off(300, 500), 0.5, { seed: 8 }).pairs.map((p) => p.pair.id);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.ok(a.slice(0, 20).some((id) => id.startsWith('o')) && a.slice(0, 20).some((id) => id.startsWith('g')), 'mix is shuffled');
});

test('batches: S·B items, one epoch when N ≥ S·B, reshuffled epochs when fewer', () => {
  const items = Array.from({ length: 10 }, (_, i) => i);
  const one = cutBatches(items, { batchSize: 3, steps: 2, seed: 1 });
  assert.equal(one.batches.length, 2);
  assert.ok(one.batches.every((b) => b.length === 3));
  assert.equal(new Set(one.batches.flat()).size, 6);
  assert.deepEqual([one.epochs, one.unused], [1, 4]);

  const many = cutBatches(items, { batchSize: 4, steps: 6, seed: 1 }); // 24 = 2 full epochs + 4
  assert.deepEqual([many.epochs, many.unused], [3, 6]);
  const flat = many.batches.flat();
  assert.deepEqual([...flat.slice(0, 10)].sort((x, y) => x - y), items);
  assert.deepEqual([...flat.slice(10, 20)].sort((x, y) => x - y), items);
  assert.notDeepEqual(flat.slice(0, 10), flat.slice(10, 20), 'each epoch is reshuffled');
  assert.deepEqual(cutBatches(items, { batchSize: 4, steps: 6, seed: 1 }).batches, many.batches);
  assert.throws(() => cutBatches([], { batchSize: 2, steps: 1, seed: 1 }), /need items/);
  assert.throws(() => cutBatches(items, { batchSize: 0, steps: 1, seed: 1 }), /batchSize/);
});
