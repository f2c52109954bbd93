/**
 * `dice experiment`: the paper's ablations in the arena, each a DICE run from the same cached
 * bootstrap, configured only by run-config overrides:
 *   Table 4: the length-regularization weight α ∈ {0, α*, 2α*} × experience replay γ ∈ {0, 0.5};
 *   Fig. 3:  γ ∈ {0, 0.25, 0.5, 0.75, 1} with α*.
 * Runs shared by both (γ = 0 and 0.5 with α*) are run once. --quick keeps γ = 0.5 for Table 4 and
 * γ ∈ {0, 0.5, 1} for the sweep.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import type { Logger } from '../util/log.ts';
import { bootstrap } from './bootstrap.ts';
import { lineChartSvg } from './figures.ts';
import { evaluateModels, runVariant, withSeedAndThreads, type MainJobSettings, type TableRow, type Variant, type VariantRun } from './main-job.ts';

export type AlphaSetting = '0' | 'α*' | '2α*';

export interface AblationRow extends TableRow {
  gamma: number;
  alphaSetting: AlphaSetting;
  /** The α used in each round (α* varies by round). */
  alphas: number[];
}

export interface ExperimentResult {
  base: TableRow;
  /** Paper Table 4: every (γ, α setting) at every iteration. */
  table4: AblationRow[];
  /** Paper Fig. 3: LC by γ with α*. */
  sweep: AblationRow[];
  seconds: number;
  cpuSeconds: number;
}

export interface ExperimentOptions {
  settings: MainJobSettings;
  quick?: boolean;
  cacheRoot: string;
  workDir: string;
  log: Logger;
  seed?: number;
  threads?: number;
}

export function experimentGrid(quick: boolean): { table4: Array<{ gamma: number; alpha: AlphaSetting }>; sweep: number[] } {
  const table4Gammas = quick ? [0.5] : [0, 0.5];
  const alphas: AlphaSetting[] = ['0', 'α*', '2α*'];
  return {
    table4: table4Gammas.flatMap((gamma) => alphas.map((alpha) => ({ gamma, alpha }))),
    sweep: quick ? [0, 0.5, 1] : [0, 0.25, 0.5, 0.75, 1],
  };
}

/** A run's variant: a namespace-safe name (γ in hundredths) and the overrides. */
export function ablationVariant(gamma: number, alpha: AlphaSetting): Variant {
  const a = alpha === '0' ? 'a0' : alpha === 'α*' ? 'astar' : 'a2star';
  const overrides: Record<string, unknown> = { 'replay.gamma': gamma };
  if (alpha === '0') Object.assign(overrides, { 'alpha.mode': 'fixed', 'alpha.value': 0 });
  else Object.assign(overrides, { 'alpha.mode': 'optimal', 'alpha.multiplier': alpha === '2α*' ? 2 : 1 });
  return { name: `g${String(Math.round(gamma * 100)).padStart(3, '0')}-${a}`, label: `γ=${gamma} α=${alpha}`, overrides };
}

export async function runExperiment(options: ExperimentOptions): Promise<ExperimentResult> {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const settings = withSeedAndThreads(options.settings, options.seed, options.threads);
  const log = options.log;
  const grid = experimentGrid(options.quick ?? false);
  const wanted = new Map<string, { gamma: number; alpha: AlphaSetting }>();
  for (const c of [...grid.table4, ...grid.sweep.map((gamma) => ({ gamma, alpha: 'α*' as AlphaSetting }))]) wanted.set(ablationVariant(c.gamma, c.alpha).name, c);

  const boot = await bootstrap(settings.bootstrap, { cacheRoot: options.cacheRoot, log });
  const workDir = resolve(options.workDir);
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const bus = await openBus(`embedded:${join(workDir, 'bus.db')}`);
  const runs = new Map<string, VariantRun>();
  try {
    let i = 0;
    for (const [name, c] of wanted) {
      log.info(`[run ${++i}/${wanted.size}] γ=${c.gamma} α=${c.alpha}`, { run: name });
      runs.set(name, await runVariant({ bus, boot, settings, variant: ablationVariant(c.gamma, c.alpha), workDir, log }));
    }
  } finally {
    await bus.close();
  }
  const models = [{ model: 'Base (π_θ(0))', variant: 'base', iteration: 0, dir: boot.policyDir }];
  for (const [name, run] of runs) run.checkpoints.forEach((dir, k) => models.push({ model: `${run.variant.label} it${k + 1}`, variant: name, iteration: k + 1, dir }));
  const { rows } = await evaluateModels(models, boot.tasks.eval, settings, log);
  const rowsOf = (gamma: number, alpha: AlphaSetting): AblationRow[] => {
    const name = ablationVariant(gamma, alpha).name;
    const run = runs.get(name)!;
    const alphas = [...new Set(run.alpha.map((w) => w.round))].map((round) => run.alpha.find((w) => w.round === round)!.alpha);
    return rows.filter((r) => r.variant === name).map((r) => ({ ...r, gamma, alphaSetting: alpha, alphas }));
  };
  const cpu = process.cpuUsage(cpu0);
  return {
    base: rows[0],
    table4: grid.table4.flatMap((c) => rowsOf(c.gamma, c.alpha)),
    sweep: grid.sweep.flatMap((gamma) => rowsOf(gamma, 'α*')),
    seconds: (performance.now() - started) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  };
}

/** Table 4 as text: γ, α, iteration, LC, WR, length, Q. */
export function formatAblationTable(rows: readonly AblationRow[], base: TableRow): string {
  const header = ['γ', 'α', 'it', 'α used', 'LC (%)', 's.e.', 'WR (%)', 'Length', 'Q'];
  const body = [
    ['-', 'base', '0', '-', base.lcWinRate.toFixed(1), base.lcStdErr.toFixed(1), base.winRate.toFixed(1), base.avgLength.toFixed(1), base.meanQuality.toFixed(3)],
    ...rows.map((r) => [
      String(r.gamma),
      r.alphaSetting,
      String(r.iteration),
      r.alphas[r.iteration - 1] === undefined ? '-' : r.alphas[r.iteration - 1].toPrecision(3),
      r.lcWinRate.toFixed(1),
      r.lcStdErr.toFixed(1),
      r.winRate.toFixed(1),
      r.avgLength.toFixed(1),
      r.meanQuality.toFixed(3),
    ]),
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** Fig. 3: LC win rate by γ, one line per iteration. */
export function sweepFigure(result: ExperimentResult): string {
  const its = [...new Set(result.sweep.map((r) => r.iteration))].sort();
  return lineChartSvg(
    its.map((it) => ({ name: `DICE it${it}`, points: result.sweep.filter((r) => r.iteration === it).map((r): [number, number] => [r.gamma, r.lcWinRate]) })),
    { title: 'LC win rate by experience replay γ (paper Fig. 3)', xLabel: 'γ (offline share)', yLabel: 'LC win rate (%)', hLines: [{ y: result.base.lcWinRate, label: 'base' }] },
  );
}
