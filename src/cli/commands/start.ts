import type { Command } from 'commander';

/** `dice start` (what `npm start` runs): the arena's main job — bootstrap, DICE, baselines, evaluation, report. */
export function register(program: Command): void {
  program
    .command('start')
    .description('the arena demo: bootstrap (cached), DICE 2 rounds, offline-DPO baseline, α=0 ablation, evaluation (paper Table 1) and a report')
    .option('--out <dir>', 'report folder (report.md, report.json, SVG figures)', '.dice/report')
    .option('--cache <dir>', 'bootstrap cache root', '.dice/testbed')
    .option('--work <dir>', 'run folder: embedded bus and checkpoints (emptied at the start)', '.dice/main')
    .option('--preset <name>', 'arena size: default | tiny (the test suite\'s)', 'default')
    .option('--seed <n>', 'seed of everything (default: the preset\'s)')
    .option('--threads <n>', 'onnxruntime threads per engine (fixed for determinism; default: the preset\'s)')
    .option('--json', 'print the result as JSON on stdout instead of the table')
    .action(async (opts: { out: string; cache: string; work: string; preset: string; seed?: string; threads?: string; json?: boolean }) => {
      const { MAIN_JOB_PRESETS, runMainJob } = await import('../../testbed/main-job.ts');
      const { formatChecks, formatTable, reportJson, writeReport } = await import('../../testbed/report.ts');
      const { createLogger } = await import('../../util/log.ts');
      const settings = MAIN_JOB_PRESETS[opts.preset];
      if (!settings) throw new Error(`--preset: unknown preset "${opts.preset}" (known: ${Object.keys(MAIN_JOB_PRESETS).join(', ')})`);
      const seed = parseIntFlag(opts.seed, '--seed');
      const threads = parseIntFlag(opts.threads, '--threads');
      const log = createLogger({ cmd: 'start' });
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

function parseIntFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}
