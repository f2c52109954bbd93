import test from 'node:test';
import assert from 'node:assert/strict';
import { formatSelection, parseGrid, selectRecipes, type SplitTables } from '../../src/testbed/chat-select.ts';
import { formatChatSeedSummary, meanOverSeeds } from '../../src/testbed/chat-summary.ts';
import type { TableRow } from '../../src/testbed/main-job.ts';

test('parseGrid: the cartesian product, numbers parsed, bad specs named', () => {
  const g = parseGrid('train.lr=5e-6,1e-5; replay.gamma=0.5,0.75');
  assert.equal(g.length, 4);
  assert.deepEqual(g[1], { name: 'lr-0.000005_gamma-0.75', overrides: { 'train.lr': 5e-6, 'replay.gamma': 0.75 } });
  assert.throws(() => parseGrid('train.lr'), /not KEY=V1,V2/);
  assert.throws(() => parseGrid('train.lr=1,'), /empty value/);
});

test('meanOverSeeds: mean and s.e. = sample std / √n', () => {
  const m = meanOverSeeds([9.6, 5.5, 6.2]);
  assert.ok(Math.abs(m.mean - 7.1) < 1e-12);
  assert.ok(Math.abs(m.stdErr - Math.sqrt(((2.5 ** 2 + 1.6 ** 2 + 0.9 ** 2) / 2) / 3)) < 1e-12);
  assert.ok(Number.isNaN(meanOverSeeds([1]).stdErr));
});

const row = (variant: string, iteration: number, lc: number): TableRow => ({
  model: variant === 'base' ? 'Base (π_θ(0))' : `${variant} it${iteration}`,
  variant,
  iteration,
  lcWinRate: lc,
  lcStdErr: 1,
  winRate: lc,
  avgLength: 100,
  meanQuality: 0.5,
  n: 10,
  extra: { 'Prompt acc (%)': lc / 2, 'Inst acc (%)': lc / 3 },
});
/** A job whose DICE it2 / offline it2 score (val, test) as given. */
const job = (dice: [number, number], off: [number, number]): SplitTables => {
  const t = (i: 0 | 1) => [row('base', 0, 40), row('offline-dpo', 1, 41), row('offline-dpo', 2, off[i]), row('dice', 1, 42), row('dice', 2, dice[i])];
  return { validation: { table: t(0) }, test: { table: t(1) } };
};

test('selectRecipes: each method by its validation LC, the test read only at the chosen recipes', () => {
  const [a, b] = parseGrid('train.lr=1,2');
  const sel = selectRecipes([
    // recipe a: DICE better on validation, worse on test; offline DPO worse on validation
    { recipe: a, results: [job([50, 30], [45, 60]), job([52, 32], [47, 62])] },
    { recipe: b, results: [job([48, 70], [49, 20]), job([46, 72], [49, 22])] },
  ]);
  assert.equal(sel.choices[0].recipe.name, a.name); // DICE: 51 vs 47 on validation
  assert.equal(sel.choices[1].recipe.name, b.name); // offline DPO: 49 vs 46
  const test = Object.fromEntries(sel.test.map((r) => [r.model, r]));
  assert.equal(test['DICE it2'].lc.mean, 31); // the test split of the validation choice, not the better test figure (71)
  assert.equal(test['Offline DPO it2'].lc.mean, 21);
  assert.equal(test['DICE it2'].promptAcc!.mean, 15.5);
  assert.ok(!('DICE α=0 it2' in test)); // no α = 0 rows in these jobs
  assert.match(formatSelection(sel), /DICE: recipe chosen on validation LC at it2 — lr-1 51\.0 ± 1\.0 \(chosen\), lr-2 47\.0 ± 1\.0/);
  assert.match(formatChatSeedSummary([job([50, 30], [45, 60]).test, job([52, 32], [47, 62]).test]), /DICE it2 − base \(LC\): -9\.0 ± 1\.0/);
});
