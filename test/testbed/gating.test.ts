import test from 'node:test';
import assert from 'node:assert/strict';
import type { HealthRecord } from '../../topics/health.ts';
import {
  armIterations,
  formatGatesFired,
  formatIterationsTable,
  formatSeedsSummary,
  gateTag,
  gatingArms,
  isDrop,
  parseGateSpec,
  pearson,
  proxyCorrelations,
  proxyMetrics,
  ranks,
  type EvaluatedModel,
  type GatingSeedResult,
  type ProxyPoint,
} from '../../src/testbed/gating.ts';
import { DEFAULT_MAIN_JOB, variantConfig, type TrainedVersion } from '../../src/testbed/main-job.ts';

const version = (v: number, parent: number, promoted: boolean, reasons: string[] = []): TrainedVersion => ({
  round: v, version: v, parentVersion: parent, location: `/ckpt/v${v}`, sha256: `sha${v}`, promoted, reasons, health: null,
});
const model = (lc: number): EvaluatedModel => ({ lc, lcStdErr: 1.4, quality: lc / 100, qualityStdErr: 0.01, avgLength: 30 });

test('gating iterations: a rejected version is never the one in use; each iteration is compared with the best earlier one', () => {
  const lc: Record<number, number> = { 0: 35, 1: 40, 2: 30, 3: 38.5, 4: 41 };
  // v2 rejected: iteration 2 keeps v1, round 3 trains from v1
  const versions = [version(1, 0, true), version(2, 1, false, ['ranking consistency (Kendall τ) -0.2 < 0']), version(3, 1, true), version(4, 3, true)];
  const compared: Array<[number, number]> = [];
  const its = armIterations(versions, (v) => model(lc[v]), (a, b) => {
    compared.push([a, b]);
    return { diff: lc[a] - lc[b], stdErr: 1 };
  });
  assert.deepEqual(its.map((it) => it.inUse), [0, 1, 1, 3, 4]);
  assert.deepEqual(its.map((it) => it.trained?.version ?? null), [null, 1, 2, 3, 4]);
  assert.deepEqual(its.map((it) => it.lc), [35, 40, 40, 38.5, 41]);
  // best earlier: the base for it1, then it1 (40)
  assert.deepEqual(compared, [[1, 0], [1, 1], [3, 1], [4, 1]]);
  assert.deepEqual(its.map((it) => it.belowBest?.bestIteration ?? null), [null, 0, 1, 1, 1]);
  // 38.5 is 1.5 below the best earlier 40: more than its s.e. of 1
  assert.deepEqual(its.map(isDrop), [false, false, false, true, false]);
});

test('proxy correlations: Pearson and Spearman (ties averaged) over the versions where a metric is defined', () => {
  assert.equal(pearson([1, 2, 3, 4], [2, 4, 6, 8]).toFixed(12), '1.000000000000');
  assert.equal(pearson([1, 2, 3, 4], [8, 6, 4, 2]).toFixed(12), '-1.000000000000');
  assert.ok(Number.isNaN(pearson([1, 1, 1], [1, 2, 3])), 'a constant metric has no correlation');
  assert.deepEqual(ranks([10, 30, 20, 30]), [1, 3.5, 2, 3.5]);
  const health = (roundAccuracy: number, kl: number | null): HealthRecord => ({
    version: 1, round: 1, parentVersion: 0, runId: 'r', promoted: true, reasons: [], heldOutPairs: 10,
    roundAccuracy, roundMargin: 0, cumulativeAccuracy: 0.7, cumulativeMargin: 0, previousCumulativeAccuracy: 0.6,
    probeGroups: 4, rankingTau: 0.5, previousProbeLength: 20, probeLength: 22, lengthChange: 0.1, kl, klStandardError: null,
  });
  const point = (lcChange: number, h: HealthRecord): ProxyPoint => ({ seed: 1, arm: 'ungated', version: 1, parentVersion: 0, promoted: true, lcChange, qualityChange: -lcChange / 100, metrics: proxyMetrics(h) });
  // accuracy rises with LC (monotone, not linear), KL falls with it; one KL undefined
  const points = [point(-3, health(0.4, 9)), point(0, health(0.5, 4)), point(1, health(0.55, 2)), point(5, health(0.9, null))];
  const byName = new Map(proxyCorrelations(points).map((c) => [c.proxy, c]));
  assert.equal(byName.get('round held-out accuracy')!.n, 4);
  assert.equal(byName.get('round held-out accuracy')!.spearman, 1);
  assert.ok(byName.get('round held-out accuracy')!.pearson > 0.9 && byName.get('round held-out accuracy')!.pearson < 1);
  assert.equal(byName.get('KL(π_t ‖ π_t−1)')!.n, 3);
  assert.equal(byName.get('KL(π_t ‖ π_t−1)')!.spearman, -1);
  assert.equal(byName.get('KL(π_t ‖ π_t−1)')!.qualitySpearman, 1, 'here Q moves against LC');
  assert.equal(byName.get('cumulative held-out accuracy change')!.n, 4);
  assert.ok(Math.abs(proxyMetrics(health(0.5, 1))['cumulative held-out accuracy change']! - 0.1) < 1e-12);
  assert.ok(Number.isNaN(byName.get('ranking τ')!.pearson), 'the same τ everywhere: undefined, not 0');
});

test('gating arms: valid run configs with the health stage; the gate only on the gated ones; the degrading recipe at N × the learning rate', () => {
  const arms = gatingArms(DEFAULT_MAIN_JOB, 10);
  const configs = arms.map((a) => variantConfig(DEFAULT_MAIN_JOB, a));
  const lr = variantConfig(DEFAULT_MAIN_JOB, { name: 'x', label: 'x', overrides: {} }).train.lr;
  assert.deepEqual(configs.map((c) => c.gate.mode), ['always-promote', 'thresholds', 'always-promote', 'thresholds']);
  assert.deepEqual(configs.map((c) => c.train.lr / lr), [1, 1, 10, 10]);
  for (const c of configs) assert.deepEqual([c.health.heldOutPairs, c.health.probePrompts], [100, 16]);
  assert.equal(new Set(arms.map((a) => a.name)).size, 4, 'one namespace per arm');
  assert.throws(() => gatingArms(DEFAULT_MAIN_JOB, 1), /--degrade-lr must be > 1/);
});

test('--gate: key=number pairs become a thresholds gate the schema accepts; each gate its own namespaces', () => {
  const gate = parseGateSpec('minRoundAccuracy=0.5, maxKl=1,onReject.lrScale=0.5');
  assert.deepEqual(gate, { 'gate.mode': 'thresholds', 'gate.minRoundAccuracy': 0.5, 'gate.maxKl': 1, 'gate.onReject.lrScale': 0.5 });
  const [, gated] = gatingArms(DEFAULT_MAIN_JOB, 10, gate);
  const config = variantConfig(DEFAULT_MAIN_JOB, gated);
  assert.deepEqual([config.gate.mode, config.gate.maxKl, config.gate.onReject.lrScale], ['thresholds', 1, 0.5]);
  assert.notEqual(gated.name, gatingArms(DEFAULT_MAIN_JOB, 10)[1].name);
  assert.equal(gateTag({ b: 1, a: 2 }), gateTag({ a: 2, b: 1 }), 'key order does not matter');
  assert.throws(() => parseGateSpec('maxKl=big'), /--gate: expected key=number pairs.*"maxKl=big"/);
  assert.throws(() => variantConfig(DEFAULT_MAIN_JOB, gatingArms(DEFAULT_MAIN_JOB, 10, parseGateSpec('maxKL=1'))[1]), /maxKL/);
});

test('gating summary: LC per iteration over seeds, rejections and drops counted, every gate that fired listed with its reasons', () => {
  const seedResult = (seed: number, lcs: number[], rejectV2: boolean): GatingSeedResult => {
    const versions = [version(1, 0, true), version(2, 1, !rejectV2, rejectV2 ? ['drop of the cumulative held-out accuracy 0.05 > 0.02'] : [])];
    const lc = (v: number) => lcs[v];
    const iterations = armIterations(versions, (v) => model(lc(v)), (a, b) => ({ diff: lc(a) - lc(b), stdErr: 1 }));
    const arm = { name: 'gated', label: 'gated', overrides: {}, gated: true, degrading: false };
    return { seed, iterations: 2, degradeLr: 10, gate: {}, arms: [{ arm, lr: 5e-5, iterations, seconds: 1 }], points: [], seconds: 1, cpuSeconds: 1 };
  };
  const results = [seedResult(1, [30, 34, 31], false), seedResult(2, [32, 36, 20], true)];
  const summary = formatSeedsSummary(results);
  // it2: seed 1 uses v2 (31), seed 2 keeps v1 (36): mean 33.5, s.e. 2.5
  assert.match(summary, /\| gated \| 31\.0 ± 1\.0 \| 35\.0 ± 1\.0 \| 33\.5 ± 2\.5 \| 1\/4 \| 1\/4 \|/);
  const table = formatIterationsTable(results).split('\n');
  assert.equal(table[2], '| 1 | gated | 30.0 ± 1.4 (0.30) | 34.0 ± 1.4 (0.34) | 31.0 ± 1.4 (0.31) ↓ |');
  assert.equal(table[3], '| 2 | gated | 32.0 ± 1.4 (0.32) | 36.0 ± 1.4 (0.36) | 36.0 ± 1.4 (0.36) (v1) |');
  assert.equal(formatGatesFired(results), '- seed 2, gated, v2 (from v1): drop of the cumulative held-out accuracy 0.05 > 0.02');
});
