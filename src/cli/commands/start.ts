import type { Command } from 'commander';
import type { MainJobSettings } from '../../testbed/main-job.ts';
import type { Logger } from '../../util/log.ts';
import { loadArenaPreset, parseIntFlag } from '../arena-flags.ts';

/** `dice start` (what `npm start` runs): the arena's main job — bootstrap, DICE, baselines, evaluation, report. */
export function register(program: Command): void {
  program
    .command('start')
    .description('the arena demo: bootstrap (cached), DICE 2 rounds, offline-DPO baseline, α=0 ablation, evaluation (paper Table 1) and a report')
    .option('--out <dir>', 'report folder (report.md, report.json, SVG figures)', '.dice/report')
    .option('--cache <dir>', 'bootstrap cache root', '.dice/testbed')
    .option('--work <dir>', 'run folder: embedded bus and checkpoints (emptied at the start)', '.dice/main')
    .option('--preset <name>', 'arena size: default | tiny (the test suite\'s); with --model: default | pilot | quick', 'default')
    .option('--seed <n>', 'seed of everything (default: the preset\'s)')
    .option('--seeds <list>', 'run the whole job once per seed (e.g. 1,2,3: a bootstrap each on first run) and print a summary of the seeds; reports in <out>/seed-<n>')
    .option('--threads <n>', 'onnxruntime threads per engine (fixed for determinism; default: the preset\'s)')
    .option('--json', 'print the result as JSON on stdout instead of the table')
    .option('--model <dir>', 'run the real-model job instead: DICE on this chat model (Hugging Face folder) with IFEval-style verifiable instructions')
    .option('--quick', 'with --model: the test suite\'s size (a minute on a tiny model)')
    .option('--fresh', 'with --model: empty the run folder first instead of resuming it')
    .option('--grid <spec>', 'with --model: recipes to choose from on the validation split, e.g. "train.lr=5e-6,1e-5;replay.gamma=0.5,0.75" (each on every seed; the test table is read at each method\'s chosen recipe)')
    .option('--skip-alpha-zero', 'with --model: leave out the DICE α = 0 run (a later run without this flag adds it, reusing the rest)')
    .action(async (opts: StartOptions) => {
      if (opts.model !== undefined) {
        await runChat(opts);
        return;
      }
      const { runMainJob } = await import('../../testbed/main-job.ts');
      const { formatChecks, formatTable, reportJson, writeReport } = await import('../../testbed/report.ts');
      const { createLogger } = await import('../../util/log.ts');
      const settings = await loadArenaPreset(opts.preset);
      const seed = parseIntFlag(opts.seed, '--seed');
      const threads = parseIntFlag(opts.threads, '--threads');
      const log = createLogger({ cmd: 'start' });
      if (opts.seeds !== undefined) {
        if (seed !== undefined) throw new Error('--seed and --seeds: give one or the other');
        await runSeeds(parseSeedList(opts.seeds), { settings, opts, threads, log });
        return;
      }
      const result = await runMainJob({ settings, cacheRoot: opts.cache, workDir: opts.work, log, seed, threads });
      const report = writeReport(result, opts.out);
      log.info('report written', { dir: report.dir, files: report.files.length });
      if (opts.json) {
        process.stdout.write(reportJson(result));
        return;
      }
      console.log(`\nTable 1 (arena, seed ${result.settings.bootstrap.seed})\n`);
      console.log(formatTable(result.table, result.evalReferenceLength));
      console.log(`\n${formatChecks(result.checks)}\n`);
      if (result.agreement) {
        const a = result.agreement;
        console.log(`implicit reward vs judge (Table 5): ${a.vanilla.agreement.toFixed(3)} vanilla, ${a.shaped.agreement.toFixed(3)} length-regularized, ${a.pairs} pairs`);
      }
      console.log(`report: ${report.dir}/report.md`);
      console.log(`wall ${result.seconds.total.toFixed(0)} s (bootstrap ${result.seconds.bootstrap.toFixed(0)} s${result.bootstrap.cached ? ', cached' : ''}), CPU ${result.cpuSeconds.toFixed(0)} s`);
    });
}

interface StartOptions {
  out: string;
  cache: string;
  work: string;
  preset: string;
  seed?: string;
  seeds?: string;
  threads?: string;
  json?: boolean;
  model?: string;
  quick?: boolean;
  fresh?: boolean;
  skipAlphaZero?: boolean;
  grid?: string;
}

/** `dice start --model DIR`: the real-model job, per seed with --seeds, then the seeds' summary. */
async function runChat(opts: StartOptions): Promise<void> {
  const { join } = await import('node:path');
  const { writeFileSync } = await import('node:fs');
  const { CHAT_JOB_PRESETS, prepareModel, projectedSeconds, runChatJob } = await import('../../testbed/chat-job.ts');
  const { formatChatSeedSummary } = await import('../../testbed/chat-summary.ts');
  const { formatTable, reportJson, writeReport } = await import('../../testbed/report.ts');
  const { createLogger } = await import('../../util/log.ts');
  const presetName = opts.quick ? 'quick' : opts.preset;
  const preset = CHAT_JOB_PRESETS[presetName];
  if (!preset) throw new Error(`--preset: unknown preset "${presetName}" for --model (known: ${Object.keys(CHAT_JOB_PRESETS).join(', ')})`);
  const settings = opts.skipAlphaZero ? { ...preset, alphaZero: false } : preset;
  const modelDir = prepareModel({ model: opts.model! });
  const threads = parseIntFlag(opts.threads, '--threads');
  const seed = parseIntFlag(opts.seed, '--seed');
  if (seed !== undefined && opts.seeds !== undefined) throw new Error('--seed and --seeds: give one or the other');
  const seeds = opts.seeds !== undefined ? parseSeedList(opts.seeds) : [seed ?? settings.bootstrap.seed];
  const log = createLogger({ cmd: 'start', model: modelDir });
  // rates for SmolLM2-135M, 2 threads, a quiet 2-core machine (README: the real-model job)
  const p = projectedSeconds(settings, { tokensPerSecond: 60, diceTokensPerSecond: 25, stepSeconds: 40, meanTokens: 80 });
  const min = (x: number) => Math.round(x / 60);
  console.error(
    `projected time per seed on 2 quiet cores with a 135M model: ~${min(p.total)} min (DICE sampling ~${min(p.diceSampling)} min, other sampling ~${min(p.sampling)} min, DPO steps ~${min(p.training)} min); ` +
      `a loaded machine is slower (about 1/CPU-share). Resumable: rerun the same command after an interruption.`,
  );
  if (opts.grid !== undefined) {
    const { formatSelection, parseGrid, selectRecipes } = await import('../../testbed/chat-select.ts');
    const grid = [];
    for (const recipe of parseGrid(opts.grid)) {
      const results = [];
      for (const s of seeds) {
        log.info(`recipe ${recipe.name}, seed ${s}`, recipe.overrides);
        const result = await runChatJob({ settings: { ...settings, run: { ...settings.run, ...recipe.overrides } }, modelDir, cacheRoot: opts.cache, workDir: opts.work, fresh: opts.fresh, log: log.child({ seed: s, recipe: recipe.name }), seed: s, threads });
        writeReport(result, join(opts.out, recipe.name, `seed-${s}`));
        results.push(result);
      }
      grid.push({ recipe, results });
    }
    const text = formatSelection(selectRecipes(grid));
    writeFileSync(join(opts.out, 'selection.md'), `${text}\n`);
    console.log(`\nRecipe chosen on the validation split; test split at the chosen recipes, mean ± s.e. over ${seeds.length} seed(s)\n\n${text}`);
    return;
  }
  const results = [];
  for (const s of seeds) {
    const result = await runChatJob({ settings, modelDir, cacheRoot: opts.cache, workDir: opts.work, fresh: opts.fresh, log: log.child({ seed: s }), seed: s, threads });
    const dir = seeds.length > 1 ? join(opts.out, `seed-${s}`) : opts.out;
    const report = writeReport(result, dir);
    if (!opts.json) {
      console.log(`
Test split (seed ${s}), against π_ref(0)'s greedy answers

${formatTable(result.test.table, result.test.referenceLength)}`);
      console.log(`
Validation split (seed ${s})

${formatTable(result.validation.table, result.validation.referenceLength)}`);
      console.log(`
report: ${report.dir}/report.md; wall ${result.seconds.total.toFixed(0)} s, CPU ${result.cpuSeconds.toFixed(0)} s`);
    }
    results.push(result);
  }
  const summary = formatChatSeedSummary(results);
  writeFileSync(join(opts.out, 'seeds.txt'), `${summary}\n`);
  if (opts.json) process.stdout.write(reportJson(results.length === 1 ? results[0] : (results as never)));
  else console.log(`\nSeeds: test split, mean ± s.e. over seeds\n\n${summary}`);
}

/** `--seeds`: the main job per seed, each in its own run and report folder, then one summary line per seed. */
async function runSeeds(
  seeds: number[],
  ctx: { settings: MainJobSettings; opts: { out: string; cache: string; work: string; json?: boolean }; threads?: number; log: Logger },
): Promise<void> {
  const { join } = await import('node:path');
  const { writeFileSync } = await import('node:fs');
  const { runMainJob } = await import('../../testbed/main-job.ts');
  const { formatSeedSummary, formatTable, writeReport } = await import('../../testbed/report.ts');
  const results = [];
  for (const seed of seeds) {
    ctx.log.info(`seed ${seed} (${results.length + 1}/${seeds.length})`);
    const result = await runMainJob({ settings: ctx.settings, cacheRoot: ctx.opts.cache, workDir: join(ctx.opts.work, `seed-${seed}`), log: ctx.log.child({ seed }), seed, threads: ctx.threads });
    writeReport(result, join(ctx.opts.out, `seed-${seed}`));
    if (!ctx.opts.json) console.log(`\nTable 1 (arena, seed ${seed})\n\n${formatTable(result.table, result.evalReferenceLength)}`);
    results.push(result);
  }
  const summary = formatSeedSummary(results);
  writeFileSync(join(ctx.opts.out, 'seeds.txt'), `${summary}\n`);
  if (ctx.opts.json) {
    process.stdout.write(`${JSON.stringify(results.map((r) => ({ seed: r.settings.bootstrap.seed, table: r.table, checks: r.checks })), null, 2)}\n`);
    return;
  }
  console.log(`\nSeeds (LC %, the issue's checks per seed)\n\n${summary}\n\nreports: ${ctx.opts.out}/seed-<n>/report.md, summary ${ctx.opts.out}/seeds.txt`);
}

/** "1,2,3" → [1, 2, 3]: distinct non-negative integers. */
export function parseSeedList(value: string): number[] {
  const seeds = value.split(',').map((s) => s.trim());
  const out = seeds.map((s) => parseIntFlag(s, '--seeds') as number);
  if (seeds.some((s) => s === '') || new Set(out).size !== out.length) throw new Error(`--seeds must be distinct non-negative integers separated by commas, got ${JSON.stringify(value)}`);
  return out;
}
