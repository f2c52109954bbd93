import test from 'node:test';
import assert from 'node:assert/strict';
import { bootstrapLcWinRates, evaluateResponses, lengthControlledWinRate, rewardJudgeAgreement } from '../../src/testbed/eval.ts';
import { summarize } from '../../src/dice/pairs.ts';
import { makeBehaviourPolicy, type PolicySpec } from '../../src/testbed/policies.ts';
import { referenceResponse } from '../../src/testbed/reference.ts';
import { makeArenaSplits } from '../../src/testbed/tasks.ts';
import { deriveSeed, Rng } from '../../src/util/random.ts';

const { eval: tasks } = makeArenaSplits({ seed: 1, trainSize: 0, evalSize: 300 });
const references = tasks.map((t) => referenceResponse(t, 1));
const base: PolicySpec = { name: 'base', pCorrect: 0.5, pPartial: 0.2, filler: [0.6, 0.3, 0.1] };

/** Responses drawn per prompt from the same stream, so policies that differ only in filler give the same answers. */
function evaluate(spec: PolicySpec, seed = 5) {
  const policy = makeBehaviourPolicy(spec);
  return evaluateResponses(tasks.map((task, i) => ({ task, response: policy(task, new Rng(deriveSeed(seed, task.id))), reference: references[i] })));
}

test('a policy that only adds filler gains WR but not LC', () => {
  const plain = evaluate(base);
  const padded = evaluate({ ...base, filler: [0, 0.2, 0.8] });
  assert.equal(padded.meanQuality, plain.meanQuality);
  assert.ok(padded.avgLength > plain.avgLength + 10);
  assert.ok(padded.winRate > plain.winRate + 8, `WR ${plain.winRate} → ${padded.winRate}`);
  assert.ok(Math.abs(padded.lcWinRate - plain.lcWinRate) < 3, `LC ${plain.lcWinRate} → ${padded.lcWinRate}`);
  assert.ok(padded.phi > 0.3, `the GLM sees the length effect, φ = ${padded.phi}`);
});

test('a more correct policy gains LC; the references against themselves sit at 50', () => {
  const plain = evaluate(base);
  const better = evaluate({ ...base, pCorrect: 0.8, pPartial: 0.1 });
  assert.ok(better.meanQuality > plain.meanQuality + 0.15);
  assert.ok(better.lcWinRate > plain.lcWinRate + 10, `LC ${plain.lcWinRate} → ${better.lcWinRate}`);
  const self = evaluateResponses(tasks.map((task, i) => ({ task, response: references[i], reference: references[i] })));
  assert.equal(self.winRate, 50);
  assert.ok(Math.abs(self.lcWinRate - 50) < 1e-9);
});

test('same seed → same evaluation', () => {
  assert.deepEqual(evaluate(base, 9), evaluate(base, 9));
  assert.notDeepEqual(evaluate(base, 9).winRate, evaluate(base, 10).winRate);
});

test('LC bootstrap over prompts: a plausible standard error, paired differences, prompts resampled whole, seeded', () => {
  const a = evaluate(base);
  const b = evaluate({ ...base, pCorrect: 0.55, pPartial: 0.15 }); // the same stream: a few answers better, the rest alike
  const promptOf = tasks.map((_, i) => i);
  const [da, db] = bootstrapLcWinRates([a, b], promptOf, { seed: 3, resamples: 300 });
  const seA = summarize(da).std;
  const seB = summarize(db).std;
  // About the standard error of a mean of n judge probabilities (the LC is close to one).
  const naive = (100 * summarize(a.preferences).std) / Math.sqrt(tasks.length);
  assert.ok(seA > 0.5 * naive && seA < 2 * naive, `s.e. ${seA} vs ${naive}`);
  // Paired: the two models answer mostly alike, so their difference varies far less than either LC.
  const seDiff = summarize(da.map((x, i) => x - db[i])).std;
  assert.ok(seDiff < 0.5 * Math.hypot(seA, seB), `paired s.e. ${seDiff} vs ${Math.hypot(seA, seB)} unpaired`);
  // Each prompt twice (two identical samples): resampling prompts whole, the s.e. does not shrink by √2.
  const twice = (e: typeof a) => ({ preferences: [...e.preferences].flatMap((x) => [x, x]), lengthDiffs: [...e.lengthDiffs].flatMap((x) => [x, x]) });
  const [dd] = bootstrapLcWinRates([twice(a)], promptOf.flatMap((i) => [i, i]), { seed: 3, resamples: 300 });
  const ratio = summarize(dd).std / seA;
  assert.ok(ratio > 0.8 && ratio < 1.25, `duplicated-sample s.e. ratio ${ratio}`);
  assert.deepEqual(bootstrapLcWinRates([a], promptOf, { seed: 3, resamples: 20 }), bootstrapLcWinRates([a], promptOf, { seed: 3, resamples: 20 }));
  assert.notDeepEqual(bootstrapLcWinRates([a], promptOf, { seed: 3, resamples: 20 }), bootstrapLcWinRates([a], promptOf, { seed: 4, resamples: 20 }));
  assert.throws(() => bootstrapLcWinRates([a], promptOf.slice(1), { seed: 3 }), /items, expected/);
});

test('LC GLM: at zero length effect LC equals the GLM intercept win rate; difficulty averages over prompts', () => {
  // Preferences made exactly by θ = 0.4, φ = 1: LC must be σ(0.4), whatever the length differences.
  const diffs = Float64Array.from({ length: 200 }, (_, i) => (i % 21) - 10);
  const sd = 6; // σ_len passed explicitly, so the fit sees exactly the generating feature
  const prefs = diffs.map((d) => 1 / (1 + Math.exp(-(0.4 + Math.tanh(d / sd)))));
  const r = lengthControlledWinRate(prefs, diffs, undefined, { lengthSigma: sd, ridge: 0 });
  assert.ok(Math.abs(r.lcWinRate - 100 / (1 + Math.exp(-0.4))) < 1e-6, `LC ${r.lcWinRate}`);
  assert.ok(Math.abs(r.phi - 1) < 1e-6);
  const difficulty = Float64Array.from({ length: 200 }, (_, i) => (i % 2 ? 1 : -1));
  const prefs2 = diffs.map((d, i) => 1 / (1 + Math.exp(-(0.4 + Math.tanh(d / sd) + 0.5 * difficulty[i]))));
  const r2 = lengthControlledWinRate(prefs2, diffs, difficulty, { lengthSigma: sd, ridge: 0 });
  const expected = (100 * (1 / (1 + Math.exp(-0.9)) + 1 / (1 + Math.exp(0.1)))) / 2;
  assert.ok(Math.abs(r2.lcWinRate - expected) < 1e-6, `LC ${r2.lcWinRate} vs ${expected}`);
  assert.throws(() => lengthControlledWinRate([], []), /no items/);
  assert.throws(() => evaluateResponses([{ task: tasks[0], response: 'x', reference: 'y', difficulty: 1 }, { task: tasks[1], response: 'x', reference: 'y' }]), /difficulty is set on 1 of 2/);
});

test('reward–judge agreement (Table 5): labels, majority votes, ties', () => {
  const r = rewardJudgeAgreement([
    { rewardA: 1, rewardB: 0, judgeProbA: 0.8 }, // agrees with the majority
    { rewardA: 0, rewardB: 1, judgeProbA: 0.8 }, // disagrees
    { rewardA: 1, rewardB: 0, judgeProbA: 0.8, aWins: false }, // the sampled label went the other way
    { rewardA: 2, rewardB: 2, judgeProbA: 0.3 }, // tie counts ½
  ]);
  assert.equal(r.n, 4);
  assert.equal(r.ties, 1);
  assert.equal(r.agreement, 1.5 / 4);
  assert.ok(Math.abs(r.expectedAgreement - (0.8 + 0.2 + 0.8 + 0.5) / 4) < 1e-12);
});
