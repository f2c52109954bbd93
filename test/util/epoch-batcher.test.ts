import assert from 'node:assert/strict';
import { test } from 'node:test';
import { datasetBatcher, EpochBatcher } from '../../src/util/epoch-batcher.ts';
import { Rng } from '../../src/util/random.ts';

// The bootstrap's and `dice train`'s order before the batchers became one (written out here as the
// reference): each step pops min(batch, n) indices off the end of a seeded shuffle, reshuffling when empty.
function poppedOrder(n: number, batch: number, seed: number, steps: number): number[][] {
  const rng = new Rng(seed);
  let order: number[] = [];
  const out: number[][] = [];
  for (let s = 0; s < steps; s++) {
    const picked: number[] = [];
    while (picked.length < Math.min(batch, n)) {
      if (order.length === 0) order = rng.shuffle([...Array(n).keys()]);
      picked.push(order.pop()!);
    }
    out.push(picked);
  }
  return out;
}

test('datasetBatcher gives the order the bootstrap and dice train used (so cached models stay valid)', () => {
  for (const [n, batch, seed] of [[10, 3, 1], [7, 7, 2], [5, 8, 3], [64, 8, 4]]) {
    const b = datasetBatcher(n, batch, seed);
    const ours = Array.from({ length: 9 }, () => b.next());
    assert.deepEqual(ours, poppedOrder(n, batch, seed, 9), `n=${n} batch=${batch} seed=${seed}`);
  }
});

test('EpochBatcher: batches span epoch boundaries, counts epochs and what the current one has left', () => {
  const epochs: number[] = [];
  const b = new EpochBatcher((e) => {
    epochs.push(e);
    return [e * 10, e * 10 + 1, e * 10 + 2];
  }, 2);
  assert.deepEqual(b.next(), [0, 1]);
  assert.equal(b.remaining, 1);
  assert.deepEqual(b.next(), [2, 10]);
  assert.equal(b.epochs, 2);
  assert.equal(b.remaining, 2);
  assert.deepEqual(epochs, [0, 1]);
  assert.throws(() => new EpochBatcher(() => [], 2).next(), /an epoch has no items/);
  assert.throws(() => new EpochBatcher(() => [1], 0), /batchSize must be a positive integer/);
});
