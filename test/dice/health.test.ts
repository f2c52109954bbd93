import test from 'node:test';
import assert from 'node:assert/strict';
import {
  gate,
  kendallTau,
  lengthShift,
  preferenceAccuracy,
  rankingConsistency,
  sequenceKl,
  type GatePolicy,
  type PairLogps,
  type VersionHealth,
} from '../../src/dice/health.ts';

const pairs: PairLogps[] = [
  { chosenPolicy: -10, chosenRef: -12, rejectedPolicy: -20, rejectedRef: -19 }, // margin 0.1·(2 − (−1)) = 0.3
  { chosenPolicy: -8, chosenRef: -8, rejectedPolicy: -9, rejectedRef: -10 }, // margin 0.1·(0 − 1) = −0.1
  { chosenPolicy: -5, chosenRef: -6, rejectedPolicy: -7, rejectedRef: -8 }, // tie: both rewards 0.1
];

test('held-out accuracy counts the pairs whose implicit reward prefers the chosen response; a tie counts ½', () => {
  const acc = preferenceAccuracy(pairs, 0.1);
  assert.equal(acc.count, 3);
  assert.ok(Math.abs(acc.accuracy - 1.5 / 3) < 1e-12);
  assert.ok(Math.abs(acc.meanMargin - (0.3 - 0.1 + 0) / 3) < 1e-12);
  assert.throws(() => preferenceAccuracy([], 0.1), /no held-out pairs/);
  assert.throws(() => preferenceAccuracy([{ ...pairs[0], rejectedRef: NaN }], 0.1), /pair 0 has rejectedRef = NaN/);
});

test('a version that flips every held-out preference has accuracy 0; its reverse has 1', () => {
  const flipped = pairs.slice(0, 2).map((p) => ({ chosenPolicy: p.rejectedPolicy, chosenRef: p.rejectedRef, rejectedPolicy: p.chosenPolicy, rejectedRef: p.chosenRef }));
  const right = [{ ...pairs[0] }, { chosenPolicy: -8, chosenRef: -10, rejectedPolicy: -9, rejectedRef: -8 }];
  assert.equal(preferenceAccuracy(right, 0.1).accuracy, 1);
  assert.equal(preferenceAccuracy(right.map((p) => ({ chosenPolicy: p.rejectedPolicy, chosenRef: p.rejectedRef, rejectedPolicy: p.chosenPolicy, rejectedRef: p.chosenRef })), 0.1).accuracy, 0);
  assert.equal(preferenceAccuracy(flipped, 0.1).accuracy, 0.5); // pair 1 was wrong before, so right after the flip
});

test('Kendall τ is 1 for identical rankings, −1 for reversed ones, and τ-b with ties', () => {
  const r = [0.3, -1.2, 2.5, 0.1, 0.9];
  assert.equal(kendallTau(r, r), 1);
  assert.equal(kendallTau(r, r.map((x) => 2 * x + 7)), 1); // a monotone map keeps the ranking
  assert.equal(kendallTau(r, r.map((x) => -x)), -1);
  // One swapped adjacent pair among 4 items: 5 concordant, 1 discordant → 4/6.
  assert.ok(Math.abs(kendallTau([1, 2, 3, 4], [1, 3, 2, 4]) - 4 / 6) < 1e-12);
  // τ-b with a tie in b: pairs (C, D, tied in b only) = (2, 0, 1) → 2 / sqrt(3·2), the τ-b formula (C − D) / √((n₀ − n₁)(n₀ − n₂)).
  assert.ok(Math.abs(kendallTau([1, 2, 3], [1, 2, 2]) - 0.8164965809277261) < 1e-12);
  assert.ok(Number.isNaN(kendallTau([1, 1, 1], [1, 2, 3])));
  assert.throws(() => kendallTau([1, 2], [1]), /2 scores against 1/);
});

test('ranking consistency averages τ over the probe groups that have a ranking', () => {
  const prev = [[1, 2, 3], [5, 5, 5], [3, 1, 2]];
  const next = [[1, 2, 3], [1, 2, 3], [-3, -1, -2]];
  const c = rankingConsistency(prev, next);
  assert.equal(c.groups, 2);
  assert.equal(c.meanTau, 0); // (1 + (−1)) / 2; the constant group has no τ
  assert.ok(Number.isNaN(rankingConsistency([[1, 1]], [[2, 2]]).meanTau));
});

test('KL(π_new ‖ π_old) is the mean log-ratio of π_new samples, with its standard error', () => {
  const kl = sequenceKl([-10, -12, -8, -10], [-11, -14, -8, -11]); // ratios 1, 2, 0, 1
  assert.equal(kl.kl, 1);
  assert.equal(kl.samples, 4);
  assert.ok(Math.abs(kl.standardError - Math.sqrt(2 / 3) / 2) < 1e-12); // sample std sqrt(2/3) over √4
  assert.equal(sequenceKl([-3, -4], [-3, -4]).kl, 0);
});

test('length shift is the relative change of the probe mean', () => {
  const s = lengthShift([10, 20, 30], [30, 30]);
  assert.equal(s.previousMean, 20);
  assert.equal(s.newMean, 30);
  assert.equal(s.relativeChange, 0.5);
});

function healthOf(overrides: Partial<VersionHealth> = {}): VersionHealth {
  return {
    version: 2,
    roundAccuracy: { accuracy: 0.7, meanMargin: 0.2, count: 50 },
    cumulativeAccuracy: { accuracy: 0.75, meanMargin: 0.4, count: 50 },
    previousCumulativeAccuracy: 0.74,
    ranking: { meanTau: 0.6, groups: 20 },
    length: { previousMean: 100, newMean: 105, relativeChange: 0.05 },
    kl: { kl: 3, standardError: 0.5, samples: 64 },
    ...overrides,
  };
}

const policy: GatePolicy = {
  mode: 'thresholds',
  minRoundAccuracy: 0.55,
  maxCumulativeAccuracyDrop: 0.02,
  minRankingTau: 0.2,
  maxLengthGrowth: 0.2,
  maxKl: 20,
};

test('the gate promotes a healthy version and rejects a failing one with every reason named', () => {
  assert.deepEqual(gate(healthOf(), policy), { promoted: true, reasons: [] });
  const bad = gate(
    healthOf({
      roundAccuracy: { accuracy: 0.3, meanMargin: -0.2, count: 50 },
      cumulativeAccuracy: { accuracy: 0.6, meanMargin: 0.1, count: 50 },
      ranking: { meanTau: -1, groups: 20 },
      length: { previousMean: 100, newMean: 150, relativeChange: 0.5 },
      kl: { kl: 40, standardError: 2, samples: 64 },
    }),
    policy,
  );
  assert.equal(bad.promoted, false);
  assert.deepEqual(bad.reasons, [
    'held-out accuracy of the round reward 0.3 < 0.55',
    'drop of the cumulative held-out accuracy 0.14 > 0.02',
    'ranking consistency (Kendall τ) -1 < 0.2',
    'relative growth of the probe length 0.5 > 0.2',
    'KL(π_t ‖ π_t−1) in nats 40 > 20',
  ]);
});

test('an undefined metric fails its check; "always-promote" and unset thresholds check nothing', () => {
  const noRanking = gate(healthOf({ ranking: { meanTau: NaN, groups: 0 } }), policy);
  assert.deepEqual(noRanking.reasons, ['ranking consistency (Kendall τ) NaN < 0.2']);
  assert.equal(gate(healthOf({ roundAccuracy: { accuracy: 0, meanMargin: -1, count: 9 } }), { mode: 'always-promote', minRoundAccuracy: 0.9 }).promoted, true);
  assert.equal(gate(healthOf({ kl: { kl: 1e9, standardError: 0, samples: 2 } }), { mode: 'thresholds' }).promoted, true);
  // The first version checked has no earlier cumulative accuracy to drop from.
  assert.equal(gate(healthOf({ previousCumulativeAccuracy: undefined, cumulativeAccuracy: { accuracy: 0, meanMargin: 0, count: 5 } }), policy).promoted, true);
});

test('a metric exactly at its threshold passes, whatever the rounding of the difference', () => {
  // 0.73 − 0.71 is 0.020000000000000018 in floats: a drop of exactly 0.02 (two pairs of 100)
  const atCap = gate(healthOf({ previousCumulativeAccuracy: 0.73, cumulativeAccuracy: { accuracy: 0.71, meanMargin: 0.4, count: 100 } }), policy);
  assert.deepEqual(atCap, { promoted: true, reasons: [] });
  const pastCap = gate(healthOf({ previousCumulativeAccuracy: 0.73, cumulativeAccuracy: { accuracy: 0.7, meanMargin: 0.4, count: 100 } }), policy);
  assert.deepEqual(pastCap.reasons, ['drop of the cumulative held-out accuracy 0.03 > 0.02']);
  assert.equal(gate(healthOf({ roundAccuracy: { accuracy: 0.55, meanMargin: 0, count: 20 } }), policy).promoted, true);
});
