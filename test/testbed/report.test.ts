import test from 'node:test';
import assert from 'node:assert/strict';
import { downsample, histogramSvg, lineChartSvg, niceTicks } from '../../src/testbed/figures.ts';
import { formatSeedSummary, formatTable } from '../../src/testbed/report.ts';
import { parseSeedList } from '../../src/cli/commands/start.ts';
import { ablationVariant, experimentGrid } from '../../src/testbed/experiment.ts';
import { ALPHA_ZERO_VARIANT, DEFAULT_MAIN_JOB, DICE_VARIANT, OFFLINE_DPO_VARIANT, phenomenaChecks, variantConfig, type AlphaWindowReport, type TableRow, type VariantRun } from '../../src/testbed/main-job.ts';

const row = (model: string, variant: string, iteration: number, lc: number, len: number): TableRow => ({
  model, variant, iteration, lcWinRate: lc, lcStdErr: 1.25, winRate: lc + 1, avgLength: len, meanQuality: 0.5, n: 10,
});

function stats(mean: number, std: number, count: number) {
  return { count, mean, std, min: mean - std, median: mean, max: mean + std };
}

function diceRun(before: number, after: number): VariantRun {
  const w: AlphaWindowReport = {
    round: 1, windowId: 0, alpha: 0.01, groups: 100, before: stats(before, 10, 100), after: stats(after, 10, 100),
    histogram: { edges: [0, 1], before: [1], after: [1] }, landscape: null,
  };
  return { variant: DICE_VARIANT, config: variantConfig(DEFAULT_MAIN_JOB, DICE_VARIANT), checkpoints: [], versions: [], alpha: [w], train: [], rounds: [], seconds: 0 };
}

test('table: fixed-width rows in the given order, numbers at fixed precision', () => {
  const text = formatTable([row('Base (π_θ(0))', 'base', 0, 12.345, 30), row('DICE it2', 'dice', 2, 20.06, 28.44)], 31.96);
  const lines = text.split('\n');
  assert.match(lines[0], /^Model\s+LC \(%\)\s+s\.e\.\s+WR \(%\)\s+Length\s+Q$/);
  assert.match(lines[2], /^Base \(π_θ\(0\)\)\s+12\.3\s+1\.3\s+13\.3\s+30\.0\s+0\.500$/);
  assert.match(lines[3], /^DICE it2\s+20\.1\s+1\.3\s+21\.1\s+28\.4\s+0\.500$/);
  assert.equal(new Set(lines.slice(0, 4).map((l) => l.length)).size, 1, 'columns line up');
  assert.match(lines.at(-1)!, /reference answers: 32\.0 chars/);
});

test('checks: each of the issue\'s phenomena passes or fails on the numbers', () => {
  const table = [
    row('Base', 'base', 0, 20, 30),
    row('Offline DPO it2', OFFLINE_DPO_VARIANT.name, 2, 24, 35),
    row('DICE it2', DICE_VARIANT.name, 2, 28.5, 31),
    row('DICE α=0 it2', ALPHA_ZERO_VARIANT.name, 2, 22, 40),
  ];
  const good = phenomenaChecks({ table, runs: [diceRun(12, 0.5)] });
  assert.deepEqual(good.map((c) => c.pass), [true, true, true, true, true]);
  // within 5%: 0.5/12 passes, 0.7/12 does not; a mean of 1 ± 10/√100 is not clearly positive
  assert.equal(phenomenaChecks({ table, runs: [diceRun(12, 0.7)] })[1].pass, false);
  assert.equal(phenomenaChecks({ table, runs: [diceRun(1.5, 0)] })[0].pass, false);
  const worse = [row('Base', 'base', 0, 20, 30), row('Offline DPO it2', OFFLINE_DPO_VARIANT.name, 2, 30, 35), row('DICE it2', DICE_VARIANT.name, 2, 27.9, 45), row('DICE α=0 it2', ALPHA_ZERO_VARIANT.name, 2, 22, 40)];
  assert.deepEqual(phenomenaChecks({ table: worse, runs: [diceRun(12, 0.5)] }).slice(2).map((c) => c.pass), [false, false, false]);
});

test('seed summary: one line per seed with the checked numbers and the passed checks; --seeds parsing', () => {
  const result = (seed: number, base: number, off: number, dice: number, passes: boolean[]) =>
    ({
      settings: { ...DEFAULT_MAIN_JOB, bootstrap: { ...DEFAULT_MAIN_JOB.bootstrap, seed } },
      table: [row('Base', 'base', 0, base, 30), row('Offline DPO it2', OFFLINE_DPO_VARIANT.name, 2, off, 33), row('DICE it2', DICE_VARIANT.name, 2, dice, 31)],
      checks: passes.map((pass, i) => ({ name: `c${i}`, pass, detail: '' })),
      comparisons: seed === 1 ? [{ a: 'DICE it2', b: 'Base', diff: 9.2, stdErr: 1.08 }, { a: 'DICE it2', b: 'Offline DPO it2', diff: 1.6, stdErr: 0.72 }] : undefined,
    }) as unknown as Parameters<typeof formatSeedSummary>[0][number];
  const lines = formatSeedSummary([result(1, 35, 42.6, 44.2, [true, true, true]), result(2, 34.8, 41.5, 39.2, [true, false, false])]).split('\n');
  assert.equal(lines.length, 5);
  assert.match(lines[2], /^\s*1\s+35\.0\s+42\.6\s+44\.2\s+\+9\.2 ± 1\.1\s+\+1\.6 ± 0\.7\s+3\/3$/);
  assert.match(lines[3], /^\s*2\s+34\.8\s+41\.5\s+39\.2\s+\+4\.4\s+-2\.3\s+1\/3$/);
  // the headline row: mean ± s.e. over seeds (s.e. = sample std / √2 = |a − b| / 2)
  assert.match(lines[4], /^mean ± s\.e\.\s+34\.9 ± 0\.1\s+42\.0 ± 0\.6\s+41\.7 ± 2\.5\s+\+6\.8 ± 2\.4\s+-0\.3 ± 1\.9\s+4\/6$/);
  assert.equal(new Set(lines.map((l) => l.length)).size, 1, 'columns line up');
  assert.deepEqual(parseSeedList('1, 2,3'), [1, 2, 3]);
  for (const bad of ['1,,2', '1,1', 'a', '-1', '']) assert.throws(() => parseSeedList(bad), /--seeds/, bad);
});

test('figures: histogram bars per non-empty bin, step lines, ticks, well-formed SVG', () => {
  const svg = histogramSvg(
    [
      { name: 'before', edges: [0, 1, 2, 3], counts: [2, 0, 5] },
      { name: 'after <α*>', edges: [0, 1, 2, 3], counts: [1, 1, 1] },
    ],
    { title: 'T & t', xLabel: 'x', yLabel: 'y' },
  );
  assert.ok(svg.startsWith('<svg') && svg.trimEnd().endsWith('</svg>'));
  assert.equal(svg.match(/fill-opacity="0.5"/g)?.length, 5);
  assert.match(svg, /T &amp; t/);
  assert.match(svg, /after &lt;α\*&gt;/);
  const steps = lineChartSvg([{ name: 's', points: [[0, 3], [1, 2], [2, 0]], step: true }], { title: 't', xLabel: 'x', yLabel: 'y', vLines: [{ x: 1, label: 'α*' }] });
  assert.match(steps, /<path d="M[\d.]+ [\d.]+ H[\d.]+ V[\d.]+ H[\d.]+ V[\d.]+"/);
  assert.deepEqual(niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  assert.deepEqual(niceTicks(-0.03, 0.02, 5), [-0.03, -0.02, -0.01, 0, 0.01, 0.02]);
});

test('downsample keeps the ends and the points around α*, at most max points', () => {
  const pts = Array.from({ length: 1000 }, (_, i): [number, number] => [i / 1000, 1000 - i]);
  const d = downsample(pts, 50, 0.4567);
  assert.ok(d.length <= 50 && d.length >= 40);
  assert.deepEqual(d[0], pts[0]);
  assert.deepEqual(d.at(-1), pts[999]);
  assert.ok(d.some((p) => p[0] === 0.457));
  assert.ok(d.every((p, i) => i === 0 || p[0] > d[i - 1][0]), 'increasing α');
  assert.deepEqual(downsample(pts.slice(0, 10), 50), pts.slice(0, 10));
});

test('experiment grid: Table 4 × γ sweep as valid run configs with namespace-safe names', () => {
  const full = experimentGrid(false);
  assert.equal(full.table4.length, 6);
  assert.deepEqual(full.sweep, [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(experimentGrid(true).table4.length, 3);
  const names = new Set<string>();
  for (const c of [...full.table4, ...full.sweep.map((gamma) => ({ gamma, alpha: 'α*' as const }))]) {
    const v = ablationVariant(c.gamma, c.alpha);
    assert.match(v.name, /^[A-Za-z0-9_-]+$/);
    names.add(v.name);
    const config = variantConfig(DEFAULT_MAIN_JOB, v);
    assert.equal(config.replay.gamma, c.gamma);
    assert.equal(config.alpha.mode, c.alpha === '0' ? 'fixed' : 'optimal');
    assert.equal(config.alpha.multiplier, c.alpha === '2α*' ? 2 : 1);
  }
  assert.equal(names.size, 9, 'γ=0 and γ=0.5 with α* are shared by Table 4 and the sweep');
});
