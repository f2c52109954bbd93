import type { Command } from 'commander';
import { loadArenaPreset, parseIntFlag } from '../arena-flags.ts';

/** `dice experiment`: the paper's ablations (Table 4: α × γ; Fig. 3: γ sweep) in the arena. */
export function register(program: Command): void {
  program
    .command('experiment')
    .description('ablations in the arena: α ∈ {0, α*, 2α*} × γ (paper Table 4) and a γ sweep (Fig. 3); longer than `dice start` (--quick for fewer runs)')
    .option('--quick', 'Table 4 at γ = 0.5 only and the sweep at γ ∈ {0, 0.5, 1}')
    .option('--out <dir>', 'report folder (experiment.md, experiment.json, gamma-sweep.svg)', '.dice/experiment')
    .option('--cache <dir>', 'bootstrap cache root (shared with dice start)', '.dice/testbed')
    .option('--work <dir>', 'run folder: embedded bus and checkpoints (emptied at the start; with --iterations kept in <work>/gating, so a rerun resumes)', '.dice/experiment-runs')
    .option('--preset <name>', 'arena size: default | tiny', 'default')
    .option('--seed <n>', 'seed of everything')
    .option('--threads <n>', 'onnxruntime threads per engine')
    .option('--iterations <n>', 'instead: the health-gating experiment, N DICE rounds per run — ungated, gated, and both with a learning rate --degrade-lr times too high — per seed; resumable (report <out>/gating/gating-<gate>.md)')
    .option('--seeds <list>', 'with --iterations: the seeds, e.g. 1,2,3 (default: --seed or the preset\'s)')
    .option('--degrade-lr <factor>', 'with --iterations: the degrading recipe\'s train.lr multiplier', '10')
    .option('--gate <spec>', 'with --iterations: the gated runs\' thresholds, e.g. minRoundAccuracy=0.5,maxCumulativeAccuracyDrop=0.02,minRankingTau=0,maxKl=1,onReject.lrScale=0.5 (default: src/testbed/gating.ts GATING_GATE)')
    .action(async (opts: ExperimentFlags) => {
      const { mkdirSync, writeFileSync } = await import('node:fs');
      const { join, resolve } = await import('node:path');
      if (opts.iterations !== undefined) {
        await runGating(opts);
        return;
      }
      const { formatAblationTable, runExperiment, sweepFigure } = await import('../../testbed/experiment.ts');
      const { createLogger } = await import('../../util/log.ts');
      const settings = await loadArenaPreset(opts.preset);
      const result = await runExperiment({
        settings,
        quick: opts.quick,
        cacheRoot: opts.cache,
        workDir: opts.work,
        log: createLogger({ cmd: 'experiment' }),
        seed: parseIntFlag(opts.seed, '--seed'),
        threads: parseIntFlag(opts.threads, '--threads'),
      });
      const table4 = formatAblationTable(result.table4, result.base);
      const sweep = formatAblationTable(result.sweep, result.base);
      const out = resolve(opts.out);
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, 'experiment.json'), `${JSON.stringify(result, null, 2)}\n`);
      writeFileSync(join(out, 'gamma-sweep.svg'), sweepFigure(result));
      writeFileSync(
        join(out, 'experiment.md'),
        `# Arena ablations\n\n## Table 4: α × γ\n\n\`\`\`\n${table4}\n\`\`\`\n\n## Fig. 3: γ sweep (α*)\n\n\`\`\`\n${sweep}\n\`\`\`\n\n![γ sweep](gamma-sweep.svg)\n\n` +
          `Wall ${result.seconds.toFixed(0)} s, CPU ${result.cpuSeconds.toFixed(0)} s.\n`,
      );
      console.log(`\nTable 4 (arena): length-regularization weight α × experience replay γ\n\n${table4}\n`);
      console.log(`Fig. 3 (arena): γ sweep with α*\n\n${sweep}\n`);
      console.log(`report: ${join(out, 'experiment.md')}\nwall ${result.seconds.toFixed(0)} s, CPU ${result.cpuSeconds.toFixed(0)} s`);
    });
}

interface ExperimentFlags {
  quick?: boolean;
  out: string;
  cache: string;
  work: string;
  preset: string;
  seed?: string;
  threads?: string;
  iterations?: string;
  seeds?: string;
  degradeLr: string;
  gate?: string;
}

/** `dice experiment --iterations N`: src/testbed/gating.ts, then its report on stdout and in <out>/gating. */
async function runGating(opts: ExperimentFlags): Promise<void> {
  const { mkdirSync, writeFileSync } = await import('node:fs');
  const { join, resolve } = await import('node:path');
  const { formatGatingReport, gateTag, parseGateSpec, runGatingExperiment } = await import('../../testbed/gating.ts');
  const { createLogger } = await import('../../util/log.ts');
  const { parseSeedList } = await import('./start.ts');
  const settings = await loadArenaPreset(opts.preset);
  const seed = parseIntFlag(opts.seed, '--seed');
  if (seed !== undefined && opts.seeds !== undefined) throw new Error('--seed and --seeds: give one or the other');
  const degradeLr = Number(opts.degradeLr);
  const out = resolve(opts.out, 'gating');
  const started = performance.now();
  const results = await runGatingExperiment({
    settings,
    iterations: parseIntFlag(opts.iterations, '--iterations') as number,
    seeds: opts.seeds !== undefined ? parseSeedList(opts.seeds) : [seed ?? settings.bootstrap.seed],
    degradeLr,
    gate: opts.gate === undefined ? undefined : parseGateSpec(opts.gate),
    cacheRoot: opts.cache,
    workDir: join(opts.work, 'gating'),
    outDir: out,
    log: createLogger({ cmd: 'experiment' }),
    threads: parseIntFlag(opts.threads, '--threads'),
  });
  const { loadavg } = await import('node:os');
  const report = `# Reward health and checkpoint gating in the arena\n\n${formatGatingReport(results)}\n\nThis invocation: wall ${((performance.now() - started) / 1000).toFixed(0)} s, load average ${loadavg().map((x) => x.toFixed(2)).join(' ')} at the end.\n`;
  mkdirSync(out, { recursive: true });
  const name = `gating-${gateTag(results[0].gate)}`;
  writeFileSync(join(out, `${name}.md`), report);
  writeFileSync(join(out, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
  console.log(`\n${report}\nreport: ${join(out, `${name}.md`)}`);
}
