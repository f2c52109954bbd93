import test from 'node:test';
import assert from 'node:assert/strict';
import { meanLengthDiffAt, packGroups, solveAlpha, type RewardGroups } from '../../src/dice/alpha.ts';
import { loserAt, winnerAt } from '../../src/dice/envelope.ts';
import { Rng } from '../../src/util/random.ts';

/** Independent reference: the pair by plain argmax/argmin of r − αℓ at one α (first index on ties). */
function naiveMeanDiff(groups: RewardGroups, alpha: number): number {
  const { rewards, lengths, offsets } = groups;
  let sum = 0;
  for (let g = 0; g + 1 < offsets.length; g++) {
    let w = offsets[g];
    let l = offsets[g];
    for (let i = offsets[g]; i < offsets[g + 1]; i++) {
      const s = rewards[i] - alpha * lengths[i];
      if (s > rewards[w] - alpha * lengths[w]) w = i;
      if (s < rewards[l] - alpha * lengths[l]) l = i;
    }
    sum += lengths[w] - lengths[l];
  }
  return sum / (offsets.length - 1);
}

function randomWindow(rng: Rng): RewardGroups {
  const groupCount = 1 + rng.int(30);
  const quantized = rng.next() < 0.3; // coarse rewards and lengths make ties and coincident breakpoints common
  const groups = Array.from({ length: groupCount }, () => {
    const k = 2 + rng.int(15);
    const lengths = Array.from({ length: k }, () => (quantized ? 10 * (1 + rng.int(5)) : 1 + rng.int(300)));
    const bias = rng.next() * 0.05; // vanilla implicit rewards favour longer responses
    const rewards = lengths.map((len) => (quantized ? rng.int(4) : bias * len + rng.normal()));
    return { rewards, lengths };
  });
  return packGroups(groups);
}

test('hand-made window: α* lands on the zero crossing, landscape as computed by hand', () => {
  // Group 1: the longer response (20) leads until α = 0.1; group 2: the longer (30) leads until α = 0.5.
  const groups = packGroups([
    { rewards: [1, 0], lengths: [20, 10] },
    { rewards: [5, 0], lengths: [30, 20] },
  ]);
  const s = solveAlpha(groups);
  assert.deepEqual([...s.landscape.alphas], [0, 0.1, 0.5]);
  assert.deepEqual([...s.landscape.meanDiffs], [10, 0, -10]);
  assert.equal(s.alpha, 0.1);
  assert.equal(s.alphaEnd, 0.5);
  assert.equal(s.objective, 0);
  assert.equal(s.meanDiffBefore, 10);
  assert.equal(s.meanDiffAfter, 0);
  assert.equal(s.groups, 2);
});

test('maxAlpha bounds the search and the landscape (a breakpoint at the bound counts)', () => {
  const groups = packGroups([
    { rewards: [1, 0], lengths: [20, 10] },
    { rewards: [5, 0], lengths: [30, 20] },
  ]);
  const below = solveAlpha(groups, { maxAlpha: 0.05 });
  assert.equal(below.alpha, 0);
  assert.equal(below.objective, 10);
  assert.equal(below.alphaEnd, 0.05);
  assert.deepEqual([...below.landscape.alphas], [0]);
  const at = solveAlpha(groups, { maxAlpha: 0.1 });
  assert.equal(at.alpha, 0.1);
  assert.equal(at.objective, 0);
});

test('ties: equal rewards take the right-hand limit (shorter winner, longer loser)', () => {
  const rewards = [1, 1, 1];
  const lengths = [5, 10, 15];
  assert.equal(winnerAt(rewards, lengths, 0, 3, 0), 0);
  assert.equal(loserAt(rewards, lengths, 0, 3, 0), 2);
  const s = solveAlpha(packGroups([{ rewards, lengths }]));
  assert.equal(s.meanDiffBefore, -10);
  assert.equal(s.landscape.alphas.length, 1);
});

test('ties: three lines through one point hop straight to the extreme line; equal |D| → smallest α', () => {
  // r − αℓ for (0,0), (1,10), (2,20) all meet at α = 0.1.
  const rewards = [0, 1, 2];
  const lengths = [0, 10, 20];
  assert.equal(winnerAt(rewards, lengths, 0, 3, 0.0999), 2);
  assert.equal(winnerAt(rewards, lengths, 0, 3, 0.1), 0);
  assert.equal(loserAt(rewards, lengths, 0, 3, 0.1), 2);
  const s = solveAlpha(packGroups([{ rewards, lengths }]));
  assert.deepEqual([...s.landscape.alphas], [0, 0.1]);
  assert.deepEqual([...s.landscape.meanDiffs], [20, -20]);
  assert.equal(s.alpha, 0);
  assert.equal(s.objective, 20);
});

test('identical responses never pair a response with itself', () => {
  assert.equal(winnerAt([2, 2], [7, 7], 0, 2, 0), 0);
  assert.equal(loserAt([2, 2], [7, 7], 0, 2, 0), 1);
});

test('random windows: never worse than a dense grid; landscape matches direct evaluation; D non-increasing', () => {
  const rng = new Rng(20240601);
  for (let trial = 0; trial < 300; trial++) {
    const groups = randomWindow(rng);
    const s = solveAlpha(groups);
    const { alphas, meanDiffs } = s.landscape;
    for (let j = 1; j < meanDiffs.length; j++) assert.ok(meanDiffs[j] <= meanDiffs[j - 1] + 1e-9, `trial ${trial}: D rises at ${j}`);
    // Grid up to twice the last breakpoint (beyond it D is constant).
    const top = 2 * alphas[alphas.length - 1] + 1e-3;
    let gridBest = Infinity;
    // Grid points off every tie: the plain argmax has no tie rule, so it is only comparable inside plateaus.
    for (let i = 0; i < 2000; i++) gridBest = Math.min(gridBest, Math.abs(naiveMeanDiff(groups, (top * (i + Math.SQRT1_2)) / 2000)));
    assert.ok(s.objective <= gridBest + 1e-9, `trial ${trial}: exact ${s.objective} worse than grid ${gridBest}`);
    // The optimum is attained: the pairs at α* give exactly the reported objective.
    assert.ok(Math.abs(meanLengthDiffAt(groups, s.alpha) - s.meanDiffAfter) < 1e-9, `trial ${trial}: pairs at α* disagree`);
    // Inside every plateau the plain argmax/argmin gives the landscape's value.
    for (let j = 0; j < alphas.length; j++) {
      const right = j + 1 < alphas.length ? alphas[j + 1] : alphas[j] + 1;
      if (right - alphas[j] < 1e-9 * Math.max(1, right)) continue; // rounding-width sliver
      const mid = (alphas[j] + right) / 2;
      assert.ok(Math.abs(naiveMeanDiff(groups, mid) - meanDiffs[j]) < 1e-9, `trial ${trial}: plateau ${j} at α=${mid}`);
    }
  }
});

test('bad input is refused with the field named', () => {
  assert.throws(() => packGroups([{ rewards: [1, 2], lengths: [1] }]), /group 0 has 2 rewards but 1 lengths/);
  assert.throws(() => packGroups([{ rewards: [1], lengths: [1] }]), /group 0 has 1 responses/);
  assert.throws(() => packGroups([{ rewards: [1, NaN], lengths: [1, 2] }]), /rewards\[1\] is NaN/);
  assert.throws(() => packGroups([{ rewards: [1, 2], lengths: [1, -2] }]), /lengths\[1\] is -2/);
  assert.throws(() => packGroups([]), /no groups/);
  assert.throws(() => solveAlpha(packGroups([{ rewards: [1, 2], lengths: [1, 2] }]), { maxAlpha: -1 }), /maxAlpha/);
});
