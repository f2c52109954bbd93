/**
 * The recipe chosen the honest way (as the paper tunes on AlpacaEval 2 and reports Arena-Hard too):
 * every recipe of a grid (run-config overrides: learning rate, steps, β, γ …) runs on every seed, each
 * method's recipe is the one with the best mean *validation* LC at its last iteration (DICE by DICE
 * it2, offline DPO by offline DPO it2 — each method gets its own tuning), and only then is the *test*
 * split read: the table of each method at its chosen recipe, mean ± s.e. over seeds.
 */
import { meanOverSeeds, type SeedMean } from './chat-summary.ts';
import type { TableRow } from './main-job.ts';

export interface Recipe {
  name: string;
  overrides: Record<string, unknown>;
}

/** "train.lr=5e-6,1e-5;replay.gamma=0.5" → the cartesian product of the values, one recipe each. */
export function parseGrid(spec: string): Recipe[] {
  const axes = spec
    .split(';')
    .map((a) => a.trim())
    .filter(Boolean)
    .map((axis) => {
      const m = /^([A-Za-z][\w.]*)=(.+)$/.exec(axis);
      if (!m) throw new Error(`--grid: "${axis}" is not KEY=V1,V2,… (e.g. train.lr=5e-6,1e-5;replay.gamma=0.5)`);
      const values = m[2].split(',').map((v) => v.trim());
      if (values.some((v) => v === '')) throw new Error(`--grid: "${axis}" has an empty value`);
      return { key: m[1], values: values.map((v) => (Number.isFinite(Number(v)) ? Number(v) : v === 'true' ? true : v === 'false' ? false : v)) };
    });
  if (axes.length === 0) throw new Error('--grid: no KEY=VALUES given');
  let recipes: Recipe[] = [{ name: '', overrides: {} }];
  for (const { key, values } of axes) {
    recipes = recipes.flatMap((r) => values.map((v) => ({ name: `${r.name}${r.name ? '_' : ''}${key.split('.').at(-1)}-${v}`, overrides: { ...r.overrides, [key]: v } })));
  }
  return recipes;
}

/** What selection reads of one finished job: the validation and test tables. */
export interface SplitTables {
  validation: { table: TableRow[] };
  test: { table: TableRow[] };
}

export interface MethodChoice {
  method: 'dice' | 'offline-dpo';
  recipe: Recipe;
  /** Mean validation LC (± s.e. over seeds) of every recipe, the chosen first. */
  validation: Array<{ recipe: string; lc: SeedMean }>;
}

export interface Selection {
  choices: MethodChoice[];
  /** Test rows: base, then each method's rows (all iterations; DICE's α = 0 at DICE's recipe), mean ± s.e. over seeds. */
  test: Array<{ model: string; recipe: string; lc: SeedMean; wr: SeedMean; length: SeedMean; promptAcc?: SeedMean; instAcc?: SeedMean }>;
}

const rowOf = (t: TableRow[], variant: string, it: number) => t.find((r) => r.variant === variant && r.iteration === it);

export function selectRecipes(grid: ReadonlyArray<{ recipe: Recipe; results: readonly SplitTables[] }>, rounds = 2): Selection {
  if (grid.length === 0 || grid.some((g) => g.results.length === 0)) throw new Error('selectRecipes: every recipe needs at least one finished seed');
  const choices: MethodChoice[] = (['dice', 'offline-dpo'] as const).map((method) => {
    const scored = grid.map((g) => ({
      recipe: g.recipe,
      lc: meanOverSeeds(g.results.map((r) => rowOf(r.validation.table, method, rounds)?.lcWinRate ?? NaN)),
    }));
    const best = scored.reduce((a, b) => (b.lc.mean > a.lc.mean ? b : a));
    return { method, recipe: best.recipe, validation: [best, ...scored.filter((s) => s !== best)].map((s) => ({ recipe: s.recipe.name, lc: s.lc })) };
  });
  const resultsOf = (name: string) => grid.find((g) => g.recipe.name === name)!.results;
  const test: Selection['test'] = [];
  const push = (model: string, recipe: string, rows: Array<TableRow | undefined>) => {
    if (rows.some((r) => r === undefined)) return;
    const rs = rows as TableRow[];
    const extra = (k: string) => (rs.every((r) => r.extra?.[k] !== undefined) ? meanOverSeeds(rs.map((r) => r.extra![k])) : undefined);
    test.push({
      model,
      recipe,
      lc: meanOverSeeds(rs.map((r) => r.lcWinRate)),
      wr: meanOverSeeds(rs.map((r) => r.winRate)),
      length: meanOverSeeds(rs.map((r) => r.avgLength)),
      promptAcc: extra('Prompt acc (%)'),
      instAcc: extra('Inst acc (%)'),
    });
  };
  const dice = choices[0].recipe.name;
  const offline = choices[1].recipe.name;
  push('Base (π_θ(0))', '-', resultsOf(dice).map((r) => rowOf(r.test.table, 'base', 0)));
  for (let it = 1; it <= rounds; it++) push(`Offline DPO it${it}`, offline, resultsOf(offline).map((r) => rowOf(r.test.table, 'offline-dpo', it)));
  for (let it = 1; it <= rounds; it++) push(`DICE it${it}`, dice, resultsOf(dice).map((r) => rowOf(r.test.table, 'dice', it)));
  for (let it = 1; it <= rounds; it++) push(`DICE α=0 it${it}`, dice, resultsOf(dice).map((r) => rowOf(r.test.table, 'dice-alpha0', it)));
  return { choices, test };
}

const pm = (m: SeedMean | undefined) => (m === undefined ? '—' : `${m.mean.toFixed(1)}${Number.isFinite(m.stdErr) ? ` ± ${m.stdErr.toFixed(1)}` : ''}`);

/** The choice (with every recipe's validation LC) and the test table, as Markdown. */
export function formatSelection(s: Selection): string {
  const lines: string[] = [];
  for (const c of s.choices) {
    lines.push(`${c.method === 'dice' ? 'DICE' : 'Offline DPO'}: recipe chosen on validation LC at it2 — ${c.validation.map((v, i) => `${v.recipe} ${pm(v.lc)}${i === 0 ? ' (chosen)' : ''}`).join(', ')}`);
  }
  lines.push('', '| Model | recipe | LC (%) | WR (%) | Length | Prompt acc (%) | Inst acc (%) |', '|---|---|---:|---:|---:|---:|---:|');
  for (const r of s.test) lines.push(`| ${r.model} | ${r.recipe} | ${pm(r.lc)} | ${pm(r.wr)} | ${pm(r.length)} | ${pm(r.promptAcc)} | ${pm(r.instAcc)} |`);
  return lines.join('\n');
}
