import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../service/run-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'dice-start-'));
const start = (name: string, seed: number) =>
  runCli(['start', '--preset', 'tiny', '--seed', String(seed), '--cache', join(root, 'cache'), '--work', join(root, `work-${name}`), '--out', join(root, `report-${name}`)]);

/** The printed Table 1 (from its header to the reference line). */
function printedTable(stdout: string): string {
  const lines = stdout.split('\n');
  const from = lines.findIndex((l) => l.startsWith('Model'));
  const to = lines.findIndex((l) => l.startsWith('reference answers'));
  assert.ok(from >= 0 && to > from, `no table in:\n${stdout}`);
  return lines.slice(from, to + 1).join('\n');
}

test('dice start (tiny arena): Table 1, report.md/json and SVG figures; the same seed prints the same table', async () => {
  const first = await start('a', 5);
  assert.equal(first.code, 0, first.stderr);
  const table = printedTable(first.stdout);
  const models = table.split('\n').slice(2, -2).map((l) => l.split(/\s{2,}/)[0]);
  assert.deepEqual(models, ['Base (π_θ(0))', 'Offline DPO it1', 'Offline DPO it2', 'DICE it1', 'DICE it2', 'DICE α=0 it1', 'DICE α=0 it2']);
  assert.match(first.stdout, /(PASS|FAIL) {2}α\* brings the mean length difference/);
  assert.match(first.stderr, /"msg":"\[1\/5\] bootstrap/);
  assert.match(first.stderr, /"msg":"\[5\/5\] evaluation/);

  const dir = join(root, 'report-a');
  const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
  assert.equal(report.table.length, 7);
  for (const r of report.table) {
    for (const k of ['lcWinRate', 'winRate']) assert.ok(r[k] >= 0 && r[k] <= 100, `${r.model} ${k} ${r[k]}`);
    assert.ok(r.avgLength > 0 && r.meanQuality >= 0 && r.meanQuality <= 1 && r.n === 16);
  }
  assert.deepEqual(report.runs.map((r: { variant: { name: string } }) => r.variant.name), ['dice', 'offline-dpo', 'dice-alpha0']);
  const dice = report.runs[0];
  assert.equal(dice.checkpoints.length, 2);
  assert.deepEqual(dice.alpha.map((w: { round: number }) => w.round), [1, 2]);
  for (const w of dice.alpha) {
    assert.equal(w.histogram.before.length + 1, w.histogram.edges.length);
    assert.equal(w.histogram.before.reduce((a: number, b: number) => a + b, 0), w.groups);
    assert.equal(w.histogram.after.reduce((a: number, b: number) => a + b, 0), w.groups);
    assert.ok(Array.isArray(w.landscape) && w.landscape.length >= 1);
  }
  assert.deepEqual([...new Set(dice.train.map((p: { round: number }) => p.round))], [1, 2]);
  assert.equal(report.runs[1].alpha.length, 0, 'offline DPO samples nothing');
  assert.ok(report.agreement.pairs > 0 && report.agreement.vanilla.agreement >= 0 && report.agreement.vanilla.agreement <= 1);
  assert.equal(report.checks.length, 5);
  assert.equal(report.bootstrap.cached, false);

  const files = readdirSync(dir).sort();
  for (const f of ['report.md', 'length-diff-r1.svg', 'alpha-landscape-r1.svg', 'train-dice.svg', 'train-offline-dpo.svg', 'bootstrap.svg']) assert.ok(files.includes(f), `${f} in ${files}`);
  for (const f of files.filter((x) => x.endsWith('.svg'))) {
    const svg = readFileSync(join(dir, f), 'utf8');
    assert.ok(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"') && svg.trimEnd().endsWith('</svg>'), f);
    assert.ok(!/NaN|Infinity/.test(svg), `${f} has a non-finite coordinate`);
  }
  const md = readFileSync(join(dir, 'report.md'), 'utf8');
  assert.match(md, /\| DICE it2 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
  assert.match(md, /!\[length-diff-r1\.svg\]\(length-diff-r1\.svg\)/);

  // Same seed, bootstrap now cached, fresh run folder: the same table.
  const second = await start('b', 5);
  assert.equal(second.code, 0, second.stderr);
  assert.equal(printedTable(second.stdout), table);
  const again = JSON.parse(readFileSync(join(root, 'report-b', 'report.json'), 'utf8'));
  assert.equal(again.bootstrap.cached, true);
  assert.deepEqual(again.table, report.table);
  assert.ok(existsSync(join(root, 'work-b', 'bus.db')));
});

test('dice start --seeds: the job per seed (each seed its own table and report), then one summary line per seed', async () => {
  // Seed 5 is cached by the test above; seed 6 bootstraps.
  const r = await runCli(['start', '--preset', 'tiny', '--seeds', '5,6', '--cache', join(root, 'cache'), '--work', join(root, 'work-seeds'), '--out', join(root, 'report-seeds')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Table 1 \(arena, seed 5\)/);
  assert.match(r.stdout, /Table 1 \(arena, seed 6\)/);
  const summary = readFileSync(join(root, 'report-seeds', 'seeds.txt'), 'utf8').trimEnd().split('\n');
  assert.match(summary[0], /seed\s+Base LC\s+Offline DPO it2\s+DICE it2\s+DICE − base\s+DICE − offline\s+checks passed/);
  assert.deepEqual(summary.slice(2, 4).map((l) => l.trim().split(/\s+/)[0]), ['5', '6']);
  assert.match(summary[4], /^mean ± s\.e\.\s+\d+\.\d ± \d+\.\d/); // the headline over the seeds
  assert.equal(summary.length, 5);
  assert.ok(r.stdout.includes(summary.join('\n')), 'the printed summary is the saved one');
  // Seed 5's numbers are those of the single-seed run.
  const single = JSON.parse(readFileSync(join(root, 'report-a', 'report.json'), 'utf8'));
  const seeded = JSON.parse(readFileSync(join(root, 'report-seeds', 'seed-5', 'report.json'), 'utf8'));
  assert.deepEqual(seeded.table, single.table);
  const bad = await runCli(['start', '--preset', 'tiny', '--seed', '1', '--seeds', '1,2', '--cache', join(root, 'cache')]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--seed and --seeds/);
});
