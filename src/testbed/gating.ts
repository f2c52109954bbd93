/**
 * `dice experiment --iterations N`: reward health and checkpoint gating in the arena (README: "Reward
 * health and checkpoint gating"). Per seed, from the same cached bootstrap, four DICE runs of N rounds,
 * every one with the health stage (src/stages/health.ts):
 *   ungated            the arena recipe, gate.mode always-promote (the paper: every v_t is used);
 *   gated              the same recipe behind GATING_GATE;
 *   degrading          the recipe with train.lr × degradeLr (a learning rate several times too high);
 *   degrading, gated   that recipe behind the same gate.
 * The gate reads only the health metrics (held-out D_offline pairs and probe samples); the ground truth
 * (judge, Q) is used only to evaluate. Every version trained is evaluated, rejected ones too, so each
 * health metric's change can be set against the LC change it should predict; iteration t of a run is the
 * model in use after round t (VariantRun.checkpoints).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import type { HealthRecord } from '../../topics/health.ts';
import { lastPromoted } from '../service/lineage.ts';
import type { Logger } from '../util/log.ts';
import { bootstrap } from './bootstrap.ts';
import { meanOverSeeds } from './chat-summary.ts';
import { bootstrapMeanStdErr } from './eval.ts';
import { evaluateModels, runVariant, variantConfig, withSeedAndThreads, type MainJobSettings, type ModelToEvaluate, type TrainedVersion, type Variant, type VariantRun } from './main-job.ts';
import { quality } from './quality.ts';

/** The health stage's sizes: 1/12 of D_offline held out (100 of the default arena's 1200 pairs), up to 16 of their prompts as probes × 4 samples. */
export function gatingHealth(settings: MainJobSettings): Record<string, unknown> {
  const heldOut = Math.max(2, Math.round(settings.bootstrap.arena.preferenceTasks / 12));
  return { 'health.heldOutPairs': heldOut, 'health.probePrompts': Math.min(16, heldOut), 'health.probeSamples': 4 };
}

/**
 * The gate. Four thresholds fixed before any arena run from what each metric means: the round reward
 * must not do worse than chance on held-out labels, the cumulative reward may lose at most 2 points of
 * held-out accuracy, the new reward must not reverse the previous one's rankings on average, and a
 * rejection halves the next round's learning rate. Those alone let the degrading recipe through on seed 1
 * (README), so a trust region was added there, on seed 1 only (the validation seed; 2 and 3 are the test
 * seeds): KL(π_t ‖ π_t−1) ≤ 1 nat per response — seed 1's rounds at the arena's recipe moved 0.06–0.15
 * nats, those at 10× its learning rate 1.2–6.7.
 */
export const GATING_GATE: Record<string, unknown> = {
  'gate.mode': 'thresholds',
  'gate.minRoundAccuracy': 0.5,
  'gate.maxCumulativeAccuracyDrop': 0.02,
  'gate.minRankingTau': 0,
  'gate.maxKl': 1,
  'gate.onReject.lrScale': 0.5,
};

export interface GatingArm extends Variant {
  gated: boolean;
  degrading: boolean;
}

/**
 * `--gate minRoundAccuracy=0.5,maxKl=1,onReject.lrScale=0.5` → the run-config keys of a thresholds gate
 * (gate.mode thresholds; the schema checks the names).
 */
export function parseGateSpec(spec: string): Record<string, unknown> {
  const out: Record<string, unknown> = { 'gate.mode': 'thresholds' };
  for (const part of spec.split(',').map((p) => p.trim()).filter((p) => p !== '')) {
    const [key, value, ...rest] = part.split('=');
    const n = Number(value);
    if (rest.length > 0 || !key || value === undefined || value.trim() === '' || !Number.isFinite(n)) {
      throw new Error(`--gate: expected key=number pairs separated by commas (e.g. minRoundAccuracy=0.5,maxKl=1), got ${JSON.stringify(part)}`);
    }
    out[`gate.${key.trim()}`] = n;
  }
  return out;
}

/** A short name for a gate, so runs behind different gates keep apart on one bus (and a rerun resumes the right one). */
export function gateTag(gate: Record<string, unknown>): string {
  const sorted = Object.fromEntries(Object.entries(gate).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 8);
}

/** The four runs of a seed; the degrading ones at `degradeLr` × the recipe's learning rate. */
export function gatingArms(settings: MainJobSettings, degradeLr: number, gate: Record<string, unknown> = GATING_GATE): GatingArm[] {
  if (!(degradeLr > 1)) throw new Error(`--degrade-lr must be > 1 (the factor that makes the learning rate too high), got ${degradeLr}`);
  const lr = variantConfig(settings, { name: 'x', label: 'x', overrides: {} }).train.lr;
  const high = { 'train.lr': lr * degradeLr };
  const health = gatingHealth(settings);
  return [
    { name: 'ungated', label: 'ungated', overrides: { ...health }, gated: false, degrading: false },
    { name: `gated-${gateTag(gate)}`, label: 'gated', overrides: { ...health, ...gate }, gated: true, degrading: false },
    { name: 'degrading', label: `lr×${degradeLr} ungated`, overrides: { ...health, ...high }, gated: false, degrading: true },
    { name: `degrading-gated-${gateTag(gate)}`, label: `lr×${degradeLr} gated`, overrides: { ...health, ...high, ...gate }, gated: true, degrading: true },
  ];
}

/** One evaluated model: LC with its prompt-level bootstrap s.e., Q with its own. */
export interface EvaluatedModel {
  lc: number;
  lcStdErr: number;
  quality: number;
  qualityStdErr: number;
  avgLength: number;
}

export interface GatingIteration extends EvaluatedModel {
  iteration: number;
  /** The version in use after round t (v_t, or the last promoted one). */
  inUse: number;
  /** v_t: what round t trained, the gate's decision and its health (absent at iteration 0, the base). */
  trained: TrainedVersion | null;
  /** LC of this iteration minus the best earlier one (the base included), with the paired bootstrap s.e. */
  belowBest: { bestIteration: number; diff: number; stdErr: number } | null;
}

export interface GatingArmResult {
  arm: GatingArm;
  lr: number;
  /** Iterations 0 (the base) … N. */
  iterations: GatingIteration[];
  seconds: number;
}

/** One trained version against its parent: each health metric's change and the truth's. */
export interface ProxyPoint {
  seed: number;
  arm: string;
  version: number;
  parentVersion: number;
  promoted: boolean;
  lcChange: number;
  qualityChange: number;
  metrics: Record<ProxyName, number | null>;
}

export const PROXIES = ['round held-out accuracy', 'cumulative held-out accuracy change', 'ranking τ', 'probe length change', 'KL(π_t ‖ π_t−1)'] as const;
export type ProxyName = (typeof PROXIES)[number];

/** The health metrics as changes against the parent (the round reward and τ already compare v_t with it). */
export function proxyMetrics(h: HealthRecord): Record<ProxyName, number | null> {
  return {
    'round held-out accuracy': h.roundAccuracy,
    'cumulative held-out accuracy change': h.cumulativeAccuracy - h.previousCumulativeAccuracy,
    'ranking τ': h.rankingTau,
    'probe length change': h.lengthChange,
    'KL(π_t ‖ π_t−1)': h.kl,
  };
}

export interface GatingSeedResult {
  seed: number;
  iterations: number;
  degradeLr: number;
  /** The gate's run-config keys. */
  gate: Record<string, unknown>;
  arms: GatingArmResult[];
  points: ProxyPoint[];
  seconds: number;
  cpuSeconds: number;
}

export interface GatingOptions {
  settings: MainJobSettings;
  iterations: number;
  seeds: number[];
  degradeLr: number;
  /** The gated runs' gate (default GATING_GATE). */
  gate?: Record<string, unknown>;
  cacheRoot: string;
  /** Run folders (one bus per seed); kept, so a rerun of the same command resumes. */
  workDir: string;
  /** Per-seed results (seed-<n>.json: a seed already there is not run again) and the report. */
  outDir: string;
  log: Logger;
  threads?: number;
}

export async function runGatingExperiment(options: GatingOptions): Promise<GatingSeedResult[]> {
  if (!(Number.isInteger(options.iterations) && options.iterations >= 1)) throw new Error(`--iterations must be a positive integer, got ${options.iterations}`);
  mkdirSync(resolve(options.outDir), { recursive: true });
  const results: GatingSeedResult[] = [];
  for (const seed of options.seeds) {
    const file = join(resolve(options.outDir), `seed-${seed}-gate-${gateTag(options.gate ?? GATING_GATE)}.json`);
    if (existsSync(file)) {
      const done = JSON.parse(readFileSync(file, 'utf8')) as GatingSeedResult;
      if (done.iterations === options.iterations && done.degradeLr === options.degradeLr && gateTag(done.gate ?? {}) === gateTag(options.gate ?? GATING_GATE)) {
        options.log.info('seed already done', { seed, file });
        results.push(done);
        continue;
      }
    }
    const result = await runGatingSeed({ ...options, seed });
    writeFileSync(`${file}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
    renameSync(`${file}.tmp`, file);
    results.push(result);
  }
  return results;
}

async function runGatingSeed(options: GatingOptions & { seed: number }): Promise<GatingSeedResult> {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const settings = withSeedAndThreads(options.settings, options.seed, options.threads);
  settings.run = { ...settings.run, rounds: options.iterations };
  const log = options.log.child({ seed: options.seed });
  const boot = await bootstrap(settings.bootstrap, { cacheRoot: options.cacheRoot, log });
  const workDir = join(resolve(options.workDir), `seed-${options.seed}`);
  mkdirSync(workDir, { recursive: true });
  const gate = options.gate ?? GATING_GATE;
  const arms = gatingArms(settings, options.degradeLr, gate);
  const bus = await openBus(`embedded:${join(workDir, 'bus.db')}`);
  const runs: VariantRun[] = [];
  try {
    for (const [i, arm] of arms.entries()) {
      log.info(`[run ${i + 1}/${arms.length}] ${arm.label}: ${options.iterations} rounds`, { run: arm.name });
      runs.push(await runVariant({ bus, boot, settings, variant: arm, workDir, log }));
    }
  } finally {
    await bus.close();
  }

  // Every distinct version once (the gated run repeats the ungated one until its first rejection).
  const models: ModelToEvaluate[] = [{ model: 'Base (π_θ(0))', variant: 'base', iteration: 0, dir: boot.policyDir }];
  const modelOfSha = new Map<string, number>();
  const modelOf = (run: VariantRun, version: number): number => {
    if (version === 0) return 0;
    const v = run.versions.find((x) => x.version === version)!;
    let k = modelOfSha.get(v.sha256);
    if (k === undefined) {
      k = models.length;
      modelOfSha.set(v.sha256, k);
      models.push({ model: `${run.variant.label} v${version}`, variant: run.variant.name, iteration: version, dir: v.location });
    }
    return k;
  };
  for (const run of runs) for (const v of run.versions) modelOf(run, v.version);
  const evaluated = await evaluateModels(models, boot.tasks.eval, settings, log, { cacheDir: join(workDir, 'eval') });
  const { rows, compare, items, promptOf } = evaluated;
  const measured: EvaluatedModel[] = rows.map((r, k) => {
    const q = items[k].map((it) => quality(it.task, it.response));
    return { lc: r.lcWinRate, lcStdErr: r.lcStdErr, quality: r.meanQuality, qualityStdErr: bootstrapMeanStdErr(q, promptOf, { seed: options.seed }), avgLength: r.avgLength };
  });

  const armResults: GatingArmResult[] = runs.map((run, a) => ({
    arm: arms[a],
    lr: run.config.train.lr,
    iterations: armIterations(run.versions, (v) => measured[modelOf(run, v)], (x, y) => compare(rows[modelOf(run, x)], rows[modelOf(run, y)])),
    seconds: run.seconds,
  }));

  const points: ProxyPoint[] = [];
  const seen = new Set<string>();
  runs.forEach((run, a) => {
    for (const v of run.versions) {
      if (!v.health || seen.has(v.sha256)) continue;
      seen.add(v.sha256);
      const child = measured[modelOf(run, v.version)];
      const parent = measured[modelOf(run, v.parentVersion)];
      points.push({
        seed: options.seed,
        arm: arms[a].name,
        version: v.version,
        parentVersion: v.parentVersion,
        promoted: v.promoted,
        lcChange: child.lc - parent.lc,
        qualityChange: child.quality - parent.quality,
        metrics: proxyMetrics(v.health),
      });
    }
  });
  const cpu = process.cpuUsage(cpu0);
  return { seed: options.seed, iterations: options.iterations, degradeLr: options.degradeLr, gate, arms: armResults, points, seconds: (performance.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 };
}

/**
 * Iterations 0 (π_θ(0)) … N of one run: the version in use after each round (the last promoted one),
 * its evaluation, and its LC against the best earlier iteration's (`compareLc(a, b)`: LC(a) − LC(b) of
 * two versions with the paired bootstrap s.e.).
 */
export function armIterations(
  versions: readonly TrainedVersion[],
  evaluated: (version: number) => EvaluatedModel,
  compareLc: (a: number, b: number) => { diff: number; stdErr: number },
): GatingIteration[] {
  const rejected = new Set(versions.filter((v) => !v.promoted).map((v) => v.version));
  const inUse = [0, ...versions.map((v) => lastPromoted(v.round + 1, rejected))];
  return inUse.map((version, t): GatingIteration => {
    let belowBest: GatingIteration['belowBest'] = null;
    if (t > 0) {
      let best = 0;
      for (let u = 1; u < t; u++) if (evaluated(inUse[u]).lc > evaluated(inUse[best]).lc) best = u;
      const c = compareLc(version, inUse[best]);
      belowBest = { bestIteration: best, diff: c.diff, stdErr: c.stdErr };
    }
    return { iteration: t, inUse: version, trained: t === 0 ? null : versions[t - 1], ...evaluated(version), belowBest };
  });
}

/** An iteration that ended below the best earlier one by more than one s.e. (what the gate should prevent). */
export function isDrop(it: GatingIteration): boolean {
  return it.belowBest !== null && it.belowBest.diff < -it.belowBest.stdErr;
}

export function pearson(x: readonly number[], y: readonly number[]): number {
  const n = x.length;
  if (n !== y.length) throw new Error(`pearson: ${n} x values, ${y.length} y values`);
  if (n < 3) return NaN;
  const mx = x.reduce((s, v) => s + v, 0) / n;
  const my = y.reduce((s, v) => s + v, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxx === 0 || syy === 0 ? NaN : sxy / Math.sqrt(sxx * syy);
}

/** Ranks with ties averaged (for Spearman's ρ: Pearson on ranks). */
export function ranks(values: readonly number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((a, b) => a[0] - b[0]);
  const out = new Array<number>(values.length);
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) out[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return out;
}

export interface ProxyCorrelation {
  proxy: ProxyName;
  n: number;
  /** With the LC change. */
  pearson: number;
  spearman: number;
  /** With the change of the ground-truth quality Q (the arena's truth without the judge's length bias). */
  qualityPearson: number;
  qualitySpearman: number;
}

/** How well each health metric's change tracked the LC (and Q) change, over every version of every seed. */
export function proxyCorrelations(points: readonly ProxyPoint[]): ProxyCorrelation[] {
  return PROXIES.map((proxy) => {
    const kept = points.filter((p) => p.metrics[proxy] !== null && Number.isFinite(p.metrics[proxy]));
    const x = kept.map((p) => p.metrics[proxy] as number);
    const y = kept.map((p) => p.lcChange);
    const q = kept.map((p) => p.qualityChange);
    return { proxy, n: kept.length, pearson: pearson(x, y), spearman: pearson(ranks(x), ranks(y)), qualityPearson: pearson(x, q), qualitySpearman: pearson(ranks(x), ranks(q)) };
  });
}

const f = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(digits));
const signed = (v: number, digits = 1) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

function markdownTable(header: string[], body: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`, ...body.map((b) => `| ${b.join(' | ')} |`)].join('\n');
}

/** Per iteration of each run: the version in use, LC and Q with their s.e., v_t's gate decision and health. */
export function formatSeedTable(r: GatingSeedResult): string {
  const header = ['run', 'it', 'in use', 'LC', 's.e.', 'Q', 's.e.', 'len', 'v_t', 'round acc', 'cum acc (Δ)', 'τ', 'len Δ', 'KL', 'vs best earlier (s.e.)'];
  const body = r.arms.flatMap((a) =>
    a.iterations.map((it) => {
      const h = it.trained?.health;
      const gate = it.trained ? (it.trained.promoted ? 'promoted' : 'REJECTED') : '—';
      return [
        a.arm.label,
        String(it.iteration),
        `v${it.inUse}`,
        f(it.lc),
        f(it.lcStdErr),
        f(it.quality, 3),
        f(it.qualityStdErr, 3),
        f(it.avgLength),
        it.trained ? `v${it.trained.version} ${gate}` : '—',
        h ? f(h.roundAccuracy, 2) : '—',
        h ? `${f(h.cumulativeAccuracy, 2)} (${signed(h.cumulativeAccuracy - h.previousCumulativeAccuracy, 2)})` : '—',
        h ? f(h.rankingTau, 2) : '—',
        h && h.lengthChange !== null ? signed(h.lengthChange, 2) : '—',
        h ? f(h.kl, 2) : '—',
        it.belowBest ? `${signed(it.belowBest.diff)} (${f(it.belowBest.stdErr)})${isDrop(it) ? ' **drop**' : ''}` : '—',
      ];
    }),
  );
  return markdownTable(header, body);
}

/**
 * One line per seed and run: LC ± its bootstrap s.e. and Q of each iteration; "(vK)" where the model in
 * use is not v_t (v_t rejected), "↓" where the iteration ended below the best earlier one by more than one s.e.
 */
export function formatIterationsTable(results: readonly GatingSeedResult[]): string {
  const its = results[0].iterations;
  const header = ['seed', 'run', ...Array.from({ length: its + 1 }, (_, t) => `it${t}: LC ± s.e. (Q)`)];
  const body = results.flatMap((r) =>
    r.arms.map((a) => [
      String(r.seed),
      a.arm.label,
      ...a.iterations.map((it) => {
        const kept = it.iteration > 0 && it.inUse !== it.iteration ? ` (v${it.inUse})` : '';
        return `${f(it.lc)} ± ${f(it.lcStdErr)} (${f(it.quality, 2)})${kept}${isDrop(it) ? ' ↓' : ''}`;
      }),
    ]),
  );
  return markdownTable(header, body);
}

/** Each rejection: seed, run, version, the gate's reasons. */
export function formatGatesFired(results: readonly GatingSeedResult[]): string {
  const lines = results.flatMap((r) =>
    r.arms.flatMap((a) => a.iterations.filter((it) => it.trained && !it.trained.promoted).map((it) => `- seed ${r.seed}, ${a.arm.label}, v${it.trained!.version} (from v${it.trained!.parentVersion}): ${it.trained!.reasons.join('; ')}`)),
  );
  return lines.length === 0 ? '- none' : lines.join('\n');
}

/**
 * Over seeds: LC per run and iteration (mean ± s.e. over seeds), the number of rejections, and how many
 * iterations ended below the best earlier one by more than one (paired bootstrap) s.e.
 */
export function formatSeedsSummary(results: readonly GatingSeedResult[]): string {
  const arms = results[0].arms.map((a) => a.arm);
  const its = results[0].iterations;
  const header = ['run', ...Array.from({ length: its + 1 }, (_, t) => `it${t} LC`), 'rejected', 'drops > 1 s.e.'];
  const body = arms.map((arm) => {
    const of = (r: GatingSeedResult) => r.arms.find((a) => a.arm.name === arm.name)!;
    const cells = Array.from({ length: its + 1 }, (_, t) => {
      const v = results.map((r) => of(r).iterations[t].lc);
      if (v.length === 1) return f(v[0]);
      const m = meanOverSeeds(v);
      return `${f(m.mean)} ± ${f(m.stdErr)}`;
    });
    const rejected = results.reduce((s, r) => s + of(r).iterations.filter((it) => it.trained && !it.trained.promoted).length, 0);
    const drops = results.reduce((s, r) => s + of(r).iterations.filter(isDrop).length, 0);
    return [arm.label, ...cells, `${rejected}/${its * results.length}`, `${drops}/${its * results.length}`];
  });
  return markdownTable(header, body);
}

export function formatCorrelations(results: readonly GatingSeedResult[]): string {
  const points = results.flatMap((r) => r.points);
  const body = proxyCorrelations(points).map((c) => [c.proxy, String(c.n), f(c.pearson, 2), f(c.spearman, 2), f(c.qualityPearson, 2), f(c.qualitySpearman, 2)]);
  const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((s, v) => s + v, 0) / xs.length);
  const rejected = points.filter((p) => !p.promoted).map((p) => p.lcChange);
  const promoted = points.filter((p) => p.promoted).map((p) => p.lcChange);
  return (
    `${markdownTable(['health metric (v_t vs its parent)', 'versions', 'Pearson r with ΔLC', 'Spearman ρ with ΔLC', 'r with ΔQ', 'ρ with ΔQ'], body)}\n\n` +
    `ΔLC of a version against its parent: ${f(mean(promoted))} on average for the ${promoted.length} promoted, ${f(mean(rejected))} for the ${rejected.length} rejected ` +
    `(ΔQ ${f(mean(points.filter((p) => p.promoted).map((p) => p.qualityChange)), 3)} and ${f(mean(points.filter((p) => !p.promoted).map((p) => p.qualityChange)), 3)}). ` +
    'Each distinct version once (the gated run repeats the ungated one until its first rejection).'
  );
}

/** The whole report (Markdown): the seeds' summary, gates fired, proxy–truth correlations, each seed's table. */
export function formatGatingReport(results: readonly GatingSeedResult[]): string {
  const gate = Object.entries(results[0].gate).map(([k, v]) => `${k}=${v}`).join(', ');
  return [
    `Gate of the gated runs: ${gate}. Degrading recipe: train.lr × ${results[0].degradeLr}. ${results[0].iterations} rounds per run.`,
    `## Over seeds ${results.map((r) => r.seed).join(', ')} (LC %, mean ± s.e. over seeds)`,
    formatSeedsSummary(results),
    '## Per iteration',
    formatIterationsTable(results),
    '## Gates fired',
    formatGatesFired(results),
    '## Proxy against truth',
    formatCorrelations(results),
    ...results.flatMap((r) => [`## Seed ${r.seed} (wall ${r.seconds.toFixed(0)} s, CPU ${r.cpuSeconds.toFixed(0)} s)`, formatSeedTable(r)]),
  ].join('\n\n');
}
