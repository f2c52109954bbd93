import test from 'node:test';
import assert from 'node:assert/strict';
import { Rng, deriveSeed } from '../../src/util/random.ts';

test('deriveSeed is stable and separates labels', () => {
  assert.equal(deriveSeed(1, 'p1', 0), deriveSeed(1, 'p1', 0));
  assert.notEqual(deriveSeed(1, 'p1', 0), deriveSeed(1, 'p1', 1));
  assert.notEqual(deriveSeed(1, 'p1'), deriveSeed('1', 'p1'));
});

test('Rng repeats for a seed and is roughly uniform and normal', () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const xs = Array.from({ length: 20000 }, () => a.next());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b.next()));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const n = new Rng(7);
  const zs = Array.from({ length: 20000 }, () => n.normal());
  const m = zs.reduce((s, x) => s + x, 0) / zs.length;
  const v = zs.reduce((s, x) => s + (x - m) ** 2, 0) / zs.length;
  assert.ok(Math.abs(m) < 0.03 && Math.abs(v - 1) < 0.05, `mean ${m} var ${v}`);
});

test('shuffle is a permutation', () => {
  const items = Array.from({ length: 100 }, (_, i) => i);
  const shuffled = new Rng(3).shuffle([...items]);
  assert.notDeepEqual(shuffled, items);
  assert.deepEqual([...shuffled].sort((x, y) => x - y), items);
});
