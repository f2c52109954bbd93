/**
 * The main job's report: a text table shaped like paper Table 1, and a folder with report.md,
 * report.json (the same numbers, for scripts) and SVG figures:
 *   length-diff-r<R>.svg   |y_w| − |y_l| before/after α* (paper Fig. 2)
 *   alpha-landscape-r<R>.svg   |mean length difference| as a function of α (paper Fig. 4)
 *   train-<variant>.svg   DPO loss and reward accuracy per step, rounds in sequence
 *   bootstrap.svg   SFT and DPO losses of the bootstrap
 * Rendering is a pure function of the result, so equal results give byte-equal tables and figures.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { meanOverSeeds } from './chat-summary.ts';
import { histogramSvg, lineChartSvg, type Series } from './figures.ts';
import type { Check, MainJobResult, TableRow, VariantRun } from './main-job.ts';

/** Fixed-width table: Model | LC (%) | s.e. | WR (%) | Length | Q (s.e.: the LC's prompt-level bootstrap standard error). */
export function formatTable(rows: readonly TableRow[], referenceLength?: number): string {
  const extra = extraColumns(rows);
  const header = ['Model', 'LC (%)', 's.e.', 'WR (%)', 'Length', 'Q', ...extra];
  const body = rows.map((r) => [r.model, r.lcWinRate.toFixed(1), stdErrText(r), r.winRate.toFixed(1), r.avgLength.toFixed(1), r.meanQuality.toFixed(3), ...extra.map((k) => extraText(r, k))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  const out = [line(header), rule, ...body.map(line)];
  if (referenceLength !== undefined) out.push(rule, `reference answers: ${referenceLength.toFixed(1)} chars on average`);
  return out.join('\n');
}

export function formatChecks(checks: readonly Check[]): string {
  return checks.map((c) => `${c.pass ? 'PASS' : 'FAIL'}  ${c.name}\n      ${c.detail}`).join('\n');
}

export function markdownTable(rows: readonly TableRow[]): string {
  const extra = extraColumns(rows);
  const lines = [`| Model | LC (%) | s.e. | WR (%) | Length | Q | n |${extra.map((k) => ` ${k} |`).join('')}`, `|---|---:|---:|---:|---:|---:|---:|${extra.map(() => '---:|').join('')}`];
  for (const r of rows) {
    lines.push(`| ${r.model} | ${r.lcWinRate.toFixed(1)} | ${stdErrText(r)} | ${r.winRate.toFixed(1)} | ${r.avgLength.toFixed(1)} | ${r.meanQuality.toFixed(3)} | ${r.n} |${extra.map((k) => ` ${extraText(r, k)} |`).join('')}`);
  }
  return lines.join('\n');
}

/** The testbed-specific columns of a table, in first-seen order. */
function extraColumns(rows: readonly TableRow[]): string[] {
  return [...new Set(rows.flatMap((r) => Object.keys(r.extra ?? {})))];
}

function extraText(r: TableRow, key: string): string {
  const v = r.extra?.[key];
  return v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(1);
}

function stdErrText(r: TableRow): string {
  return Number.isFinite(r.lcStdErr) ? r.lcStdErr.toFixed(1) : '—';
}

/** The figures of a result, by file name. */
export function reportFigures(result: MainJobResult): Map<string, string> {
  const figures = new Map<string, string>();
  const dice = result.runs.find((r) => r.variant.name === 'dice');
  for (const w of dice?.alpha ?? []) {
    const suffix = `r${w.round}${(dice?.alpha.filter((x) => x.round === w.round).length ?? 0) > 1 ? `-w${w.windowId}` : ''}`;
    figures.set(
      `length-diff-${suffix}.svg`,
      histogramSvg(
        [
          { name: `α = 0 (mean ${w.before.mean.toFixed(1)})`, edges: w.histogram.edges, counts: w.histogram.before, color: '#2a9d8f' },
          { name: `α* = ${w.alpha.toPrecision(3)} (mean ${w.after.mean.toFixed(1)})`, edges: w.histogram.edges, counts: w.histogram.after, color: '#e76f51' },
        ],
        { title: `DICE round ${w.round}: |y_w| − |y_l| of the generated pairs (paper Fig. 2)`, xLabel: 'length difference (chars)', yLabel: 'pairs' },
      ),
    );
    if (w.landscape) {
      figures.set(
        `alpha-landscape-${suffix}.svg`,
        lineChartSvg([{ name: '|mean(|y_w| − |y_l|)|', points: w.landscape, step: true }], {
          title: `DICE round ${w.round}: objective of Eq. 6 over α (paper Fig. 4)`,
          xLabel: 'α',
          yLabel: '|mean length difference| (chars)',
          vLines: [{ x: w.alpha, label: 'α*' }],
          hLines: [{ y: 0 }],
        }),
      );
    }
  }
  for (const run of result.runs) {
    if (run.train.length === 0) continue;
    figures.set(`train-${run.variant.name}.svg`, trainFigure(run));
  }
  const boot = result.bootstrap.history;
  if (boot.sft.length + boot.dpo.length > 0) {
    figures.set(
      'bootstrap.svg',
      lineChartSvg(
        [
          { name: 'SFT loss (per token)', points: boot.sft.map((s) => [s.step, s.loss]) },
          { name: 'DPO loss (D_offline)', points: boot.dpo.map((s) => [boot.sft.length + s.step, s.loss]) },
        ],
        { title: 'Bootstrap: SFT from scratch → π_ref(0), then DPO → π_θ(0)', xLabel: 'step', yLabel: 'loss' },
      ),
    );
  }
  return figures;
}

function trainFigure(run: VariantRun): string {
  // Rounds in sequence on one axis: step s of round t at (t − 1)·S + s.
  const perRound = Math.max(...run.train.map((p) => p.step));
  const x = (p: { round: number; step: number }) => (p.round - 1) * perRound + p.step;
  const series: Series[] = [
    { name: 'DPO loss', points: run.train.map((p) => [x(p), p.loss]) },
    { name: 'reward accuracy', points: run.train.map((p) => [x(p), p.rewardAccuracy]) },
  ];
  const rounds = [...new Set(run.train.map((p) => p.round))].slice(1);
  return lineChartSvg(series, {
    title: `${run.variant.label}: per-step training metrics (rounds in sequence)`,
    xLabel: 'step',
    yLabel: 'loss / accuracy',
    vLines: rounds.map((r) => ({ x: (r - 1) * perRound + 0.5, label: `round ${r}` })),
  });
}

/** report.md: the table, the checks, α* per round, agreement, timings and the figures. */
export function reportMarkdown(result: MainJobResult, figures: readonly string[]): string {
  const s = result.settings;
  const lines: string[] = [
    `# ${result.title ?? 'DICE in the arena: self-alignment with DPO implicit rewards, in miniature'}`,
    '',
    `Seed ${s.bootstrap.seed}, ${s.bootstrap.threads} onnxruntime thread(s). Bootstrap ${result.bootstrap.settingsHash}` +
      ` (${result.bootstrap.cached ? 'cached' : `built in ${result.bootstrap.seconds.total.toFixed(0)} s`}).`,
    '',
    `## Table 1${result.title ? '' : ' (arena)'}: length-controlled win rate vs the reference answers`,
    '',
    markdownTable(result.table),
    '',
    `LC: AlpacaEval-2-style length-controlled win rate (GLM with a length term, at zero length difference); s.e.: its standard error` +
      ` (bootstrap over eval prompts, 200 draws; the checks give paired ones for differences); WR: raw win rate` +
      ` (judge probabilities averaged); Length: mean response length in characters (references: ${result.evalReferenceLength.toFixed(1)});` +
      ` Q: mean ground-truth quality. ${s.eval.samplesPerPrompt} samples per eval prompt at T=${s.eval.temperature}, top-p ${s.eval.topP}.`,
    '',
    ...(result.sections ?? []).flatMap((section) => [section, '']),
    '## Checks of the paper\'s phenomena',
    '',
    ...result.checks.map((c) => `- **${c.pass ? 'PASS' : 'FAIL'}** ${c.name}: ${c.detail}`),
    '',
    '## Length-regularized reward shaping (α*)',
    '',
    '| run | round | α | pairs | mean |y_w| − |y_l| at α=0 | at α | std at α=0 | std at α |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const run of result.runs) {
    for (const w of run.alpha) {
      lines.push(`| ${run.variant.label} | ${w.round} | ${w.alpha.toPrecision(4)} | ${w.groups} | ${w.before.mean.toFixed(2)} | ${w.after.mean.toFixed(2)} | ${w.before.std.toFixed(2)} | ${w.after.std.toFixed(2)} |`);
    }
  }
  if (result.agreement) {
    const a = result.agreement;
    lines.push(
      '',
      '## Implicit reward vs judge (paper Table 5)',
      '',
      `${a.pairs} pairs of round-1 samples (two distinct responses of one prompt), labelled once by the length-biased judge.`,
      '',
      '| reward | alignment rate | expected under judge noise | ties |',
      '|---|---:|---:|---:|',
      `| DPO implicit reward (α = 0) | ${a.vanilla.agreement.toFixed(3)} | ${a.vanilla.expectedAgreement.toFixed(3)} | ${a.vanilla.ties} |`,
      `| length-regularized (α* = ${a.alpha.toPrecision(3)}) | ${a.shaped.agreement.toFixed(3)} | ${a.shaped.expectedAgreement.toFixed(3)} | ${a.shaped.ties} |`,
    );
  }
  lines.push('', '## Runs', '', '| run | round | generated pairs | offline pairs | seconds by stage |', '|---|---:|---:|---:|---|');
  for (const run of result.runs) {
    for (const r of run.rounds) {
      const secs = Object.entries(r.seconds).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ');
      lines.push(`| ${run.variant.label} | ${r.round} | ${r.generatedPairs} | ${r.offlinePairs} | ${secs} |`);
    }
  }
  const sec = result.seconds;
  lines.push(
    '',
    `Wall time: ${sec.total.toFixed(0)} s (bootstrap ${sec.bootstrap.toFixed(0)} s, runs ${Object.entries(sec.runs).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ')}, evaluation ${sec.eval.toFixed(0)} s);` +
      ` CPU time of the process ${result.cpuSeconds.toFixed(0)} s.`,
    '',
    '## Figures',
    '',
    ...figures.map((f) => `![${f}](${f})`),
    '',
  );
  return lines.join('\n');
}

/** JSON of the result (typed arrays and non-finite numbers made plain). */
export function reportJson(result: MainJobResult): string {
  return `${JSON.stringify(result, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as unknown as ArrayLike<number>) : typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
}

/** Writes report.md, report.json and the figures; returns the paths written. */
export function writeReport(result: MainJobResult, outDir: string): { dir: string; files: string[] } {
  const dir = resolve(outDir);
  mkdirSync(dir, { recursive: true });
  const figures = reportFigures(result);
  const files: string[] = [];
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    files.push(join(dir, name));
  };
  write('report.json', reportJson(result));
  for (const [name, svg] of figures) write(name, svg);
  write('report.md', reportMarkdown(result, [...figures.keys()]));
  return { dir, files };
}

/**
 * One line per seed of a multi-seed `dice start --seeds`: the Table-1 numbers the issue's checks read
 * (base, offline DPO it2, DICE it2) and how many checks passed — how far one seed's result generalises.
 */
export function formatSeedSummary(results: readonly MainJobResult[]): string {
  const fmt = (v: number | undefined, signed = false) => (v === undefined ? '—' : `${signed && v >= 0 ? '+' : ''}${v.toFixed(1)}`);
  const header = ['seed', 'Base LC', 'Offline DPO it2', 'DICE it2', 'DICE − base', 'DICE − offline', 'checks passed'];
  const body = results.map((r) => {
    const row = (variant: string, it: number) => r.table.find((x) => x.variant === variant && x.iteration === it);
    const base = row('base', 0);
    const off = row('offline-dpo', 2);
    const dice = row('dice', 2);
    // DICE − other, with its paired s.e. where the run measured it
    const versus = (other?: TableRow) => {
      if (!dice || !other) return '—';
      const c = r.comparisons?.find((x) => x.a === dice.model && x.b === other.model);
      return fmt(dice.lcWinRate - other.lcWinRate, true) + (c ? ` ± ${c.stdErr.toFixed(1)}` : '');
    };
    return [String(r.settings.bootstrap.seed), fmt(base?.lcWinRate), fmt(off?.lcWinRate), fmt(dice?.lcWinRate), versus(base), versus(off), `${r.checks.filter((c) => c.pass).length}/${r.checks.length}`];
  });
  if (results.length > 1) {
    // the headline: mean ± s.e. over seeds (not the best seed)
    const lc = (r: MainJobResult, variant: string, it: number) => r.table.find((x) => x.variant === variant && x.iteration === it)?.lcWinRate;
    const over = (f: (r: MainJobResult) => number | undefined, signed = false) => {
      const v = results.map(f);
      if (v.some((x) => x === undefined)) return '—';
      const m = meanOverSeeds(v as number[]);
      return `${fmt(m.mean, signed)} ± ${m.stdErr.toFixed(1)}`;
    };
    const lcBase = (r: MainJobResult) => lc(r, 'base', 0);
    const lcOff = (r: MainJobResult) => lc(r, 'offline-dpo', 2);
    const lcDice = (r: MainJobResult) => lc(r, 'dice', 2);
    const minus = (a: typeof lcBase, b: typeof lcBase) => (r: MainJobResult) => {
      const x = a(r);
      const y = b(r);
      return x === undefined || y === undefined ? undefined : x - y;
    };
    const passed = results.reduce((n, r) => n + r.checks.filter((c) => c.pass).length, 0);
    const total = results.reduce((n, r) => n + r.checks.length, 0);
    body.push(['mean ± s.e.', over(lcBase), over(lcOff), over(lcDice), over(minus(lcDice, lcBase), true), over(minus(lcDice, lcOff), true), `${passed}/${total}`]);
  }
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
