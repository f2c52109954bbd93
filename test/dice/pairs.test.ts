import test from 'node:test';
import assert from 'node:assert/strict';
import { packGroups, solveAlpha } from '../../src/dice/alpha.ts';
import { histogram, lengthDiffs, selectPair, selectPairs, summarize, windowLengthStats } from '../../src/dice/pairs.ts';
import { Rng } from '../../src/util/random.ts';

test('chosen = argmax, rejected = argmin of the shaped reward', () => {
  const rewards = [1.0, 2.0, 0.5, 1.9];
  const lengths = [10, 100, 12, 20];
  const vanilla = selectPair(rewards, lengths, 0);
  assert.deepEqual([vanilla.chosen, vanilla.rejected, vanilla.lengthDiff], [1, 2, 88]);
  const shaped = selectPair(rewards, lengths, 0.01); // shaped: 0.9, 1.0, 0.38, 1.7
  assert.deepEqual([shaped.chosen, shaped.rejected, shaped.lengthDiff], [3, 2, 8]);
  assert.ok(Math.abs(shaped.chosenShaped - 1.7) < 1e-12 && Math.abs(shaped.rejectedShaped - 0.38) < 1e-12);
});

test('at a tie the pair follows the α* sweep: shorter chosen, longer rejected', () => {
  // Shaped rewards at α = 0.1: 1 − 1 = 0 and 2 − 2 = 0 tie; the right-hand limit prefers the shorter.
  const p = selectPair([1, 2, -5], [10, 20, 30], 0.1);
  assert.equal(p.chosen, 0);
  assert.throws(() => selectPair([1], [1], 0), /at least 2/);
  assert.throws(() => selectPair([1, 2], [1, 2], -1), /alpha/);
});

test('pairs built at α* reproduce the objective the solver reported', () => {
  const rng = new Rng(9);
  const groups = packGroups(
    Array.from({ length: 200 }, () => {
      const lengths = Array.from({ length: 8 }, () => 5 + rng.int(100));
      return { lengths, rewards: lengths.map((l) => 0.02 * l + rng.normal()) };
    }),
  );
  const s = solveAlpha(groups);
  const stats = windowLengthStats(groups, s.alpha);
  assert.ok(stats.before.stats.mean > 20, `vanilla rewards should prefer long responses, got ${stats.before.stats.mean}`);
  assert.equal(stats.before.stats.mean, s.meanDiffBefore);
  assert.ok(Math.abs(stats.after.stats.mean - s.meanDiffAfter) < 1e-9);
  assert.ok(Math.abs(stats.after.stats.mean) < Math.abs(stats.before.stats.mean) / 10);
  const { chosen, rejected } = selectPairs(groups, s.alpha);
  const diffs = lengthDiffs(groups, s.alpha);
  for (let g = 0; g < 200; g++) {
    const local = selectPair(
      groups.rewards.subarray(groups.offsets[g], groups.offsets[g + 1]),
      groups.lengths.subarray(groups.offsets[g], groups.offsets[g + 1]),
      s.alpha,
    );
    assert.equal(local.chosen + groups.offsets[g], chosen[g]);
    assert.equal(local.rejected + groups.offsets[g], rejected[g]);
    assert.equal(local.lengthDiff, diffs[g]);
  }
});

test('summarize and histogram', () => {
  assert.deepEqual(summarize([3, 1, 2, 10]), { count: 4, mean: 4, std: Math.sqrt(12.5), min: 1, median: 2.5, max: 10 });
  const h = histogram([0, 1, 2, 3, 4, 10], { bins: 5, min: 0, max: 5 });
  assert.deepEqual([...h.edges], [0, 1, 2, 3, 4, 5]);
  assert.deepEqual([...h.counts], [1, 1, 1, 1, 1]);
  assert.equal(h.overflow, 1);
  const auto = histogram([-2, 2, 2], { bins: 2 });
  assert.deepEqual([...auto.edges], [-2, 0, 2]);
  assert.deepEqual([...auto.counts], [1, 2]); // the max lands in the last bin
  assert.deepEqual([...histogram([7, 7], { bins: 1 }).counts], [2]);
});
