/**
 * The headline over seeds: for every model of the table (and for DICE it2 − base / − offline DPO it2)
 * the mean over seeds ± its standard error (sample std over seeds / √seeds) — not the best seed.
 * Used by the real-model job and for the arena's seeds.
 */
import type { MainJobResult, TableRow } from './main-job.ts';

export interface SeedMean {
  mean: number;
  /** Standard error over seeds; NaN with one seed. */
  stdErr: number;
  seeds: number;
}

export function meanOverSeeds(values: readonly number[]): SeedMean {
  const n = values.length;
  const mean = values.reduce((s, v) => s + v, 0) / n;
  const variance = n > 1 ? values.reduce((s, v) => s + (v - mean) ** 2, 0) / (n - 1) : NaN;
  return { mean, stdErr: Math.sqrt(variance / n), seeds: n };
}

type Metric = { name: string; of: (r: TableRow) => number | undefined };

const METRICS: Metric[] = [
  { name: 'LC (%)', of: (r) => r.lcWinRate },
  { name: 'WR (%)', of: (r) => r.winRate },
  { name: 'Length', of: (r) => r.avgLength },
  { name: 'Prompt acc (%)', of: (r) => r.extra?.['Prompt acc (%)'] },
  { name: 'Inst acc (%)', of: (r) => r.extra?.['Inst acc (%)'] },
];

const fmt = (m: SeedMean) => `${m.mean.toFixed(1)}${Number.isFinite(m.stdErr) ? ` ± ${m.stdErr.toFixed(1)}` : ''}`;

/** Per model, per metric: mean ± s.e. over the results (one per seed); rows in the first result's order. */
export function seedMeanTable(results: ReadonlyArray<Pick<MainJobResult, 'table'>>): Array<{ model: string; metrics: Record<string, SeedMean> }> {
  if (results.length === 0) return [];
  return results[0].table.map((row) => {
    const metrics: Record<string, SeedMean> = {};
    for (const m of METRICS) {
      const values = results.map((r) => r.table.find((x) => x.model === row.model)).map((x) => (x ? m.of(x) : undefined));
      if (values.every((v): v is number => v !== undefined && Number.isFinite(v))) metrics[m.name] = meanOverSeeds(values);
    }
    return { model: row.model, metrics };
  });
}

/** LC of DICE it2 minus base and minus offline DPO it2, mean ± s.e. over seeds (seeds missing a row are left out). */
export function seedDifferences(results: ReadonlyArray<Pick<MainJobResult, 'table'>>): Array<{ name: string; value: SeedMean }> {
  const diff = (r: Pick<MainJobResult, 'table'>, other: [string, number]) => {
    const dice = r.table.find((x) => x.variant === 'dice' && x.iteration === 2);
    const b = r.table.find((x) => x.variant === other[0] && x.iteration === other[1]);
    return dice && b ? dice.lcWinRate - b.lcWinRate : undefined;
  };
  const out: Array<{ name: string; value: SeedMean }> = [];
  for (const [name, other] of [['DICE it2 − base', ['base', 0]], ['DICE it2 − offline DPO it2', ['offline-dpo', 2]], ['DICE it2 − DICE α=0 it2', ['dice-alpha0', 2]]] as const) {
    const values = results.map((r) => diff(r, other as [string, number])).filter((v): v is number => v !== undefined);
    if (values.length > 0) out.push({ name: `${name} (LC)`, value: meanOverSeeds(values) });
  }
  return out;
}

/** Text table of seedMeanTable plus the differences. */
export function formatChatSeedSummary(results: ReadonlyArray<Pick<MainJobResult, 'table'>>): string {
  const rows = seedMeanTable(results);
  const names = METRICS.map((m) => m.name).filter((n) => rows.some((r) => r.metrics[n]));
  const header = ['Model', ...names];
  const body = rows.map((r) => [r.model, ...names.map((n) => (r.metrics[n] ? fmt(r.metrics[n]) : '—'))]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const diffs = seedDifferences(results).map((d) => `${d.name}: ${d.value.mean >= 0 ? '+' : ''}${fmt(d.value)}`);
  return [
    `${results.length} seed(s); mean ± s.e. over seeds`,
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...body.map(line),
    ...diffs,
  ].join('\n');
}
