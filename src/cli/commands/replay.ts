import type { Command } from 'commander';
import { addRunFlags } from '../run-options.ts';

interface ReplayCliOptions {
  from?: string;
  fromBus?: string;
  fromNamespace?: string;
  verify?: boolean;
  verifyRounds?: string;
  verifyStages?: string;
  fromStage?: string;
  out?: string;
  bus?: string;
  namespace: string;
  relocate?: string[];
  json?: boolean;
  config?: string;
  set?: string[];
}

const HELP = `
Sources: an archive directory written by \`dice archive\` (manifest.json + Parquet), a run directory
of \`dice run\` holding its embedded bus (bus.db, namespace "run" unless --from-namespace), or
--from-bus URL --from-namespace NS. Checkpoints are found at their recorded locations (--relocate
OLD=NEW where they moved) and their sha256 is checked before use.

--verify re-derives every stage of every round from that stage's recorded inputs, with the recorded
config: samples (recorded prompts + recorded π_θ(t−1)), scored (recorded samples), pairs (recorded
scored), batches (recorded pairs + offline), checkpoints (recorded batches from the recorded parent;
sha256 compared). It prints, per round and stage, "identical" or the first difference (topic, key,
field path, recorded vs re-derived) and exits 0 only when every stage is identical.

Without --verify it runs the recorded run again into a new run (--out NEWDIR, its own bus and
namespace), with the recorded config changed by any config flags, and compares the new checkpoints'
sha256 with the recorded ones. --from-stage S takes round 1's records up to topic S from the
recording and runs the stages after S again (e.g. --from-stage scored --alpha 0 re-pairs the
recorded scored groups with α = 0). Rounds ≥ 2 always run in full: their recorded records came from
the recorded v1, which a re-run round 1 replaces, so they cannot be reused.

Examples:
  dice replay --from runs/a-archive --verify
  dice replay --from runs/a-archive --out runs/a-alpha0 --from-stage scored --alpha 0
  dice replay --from runs/a --out runs/a-2x --from-stage scored --set alpha.multiplier=2
`;

export function register(program: Command): void {
  const cmd = program
    .command('replay')
    .description('re-run a recorded run from its prompts, offline data and checkpoints; --verify re-derives every stage and compares; --from-stage re-runs what follows a topic into a new run')
    .option('--from <dir>', 'an archive (dice archive --out) or a dice run directory (with bus.db)')
    .option('--from-bus <url>', 'read the recorded run from this bus instead')
    .option('--from-namespace <ns>', 'the recorded run\'s namespace (default: the archive\'s; "run" for a run directory or bus)')
    .option('--verify', 're-derive each stage from its recorded inputs and compare; exit 0 only when all are identical')
    .option('--verify-rounds <list>', 'with --verify: only these rounds, e.g. 1 or 1,2')
    .option('--verify-stages <list>', 'with --verify: only these stages (samples,scored,pairs,batches,checkpoints)')
    .option('--from-stage <stage>', 'prompts | samples | scored | pairs | batches: take round 1 up to this topic from the recording, re-run the rest', 'prompts')
    .option('--out <dir>', 'the new run\'s directory (required without --verify); with --verify, where re-derived checkpoints are kept (default: a temporary directory)')
    .option('--bus <url>', 'the new run\'s bus (default: embedded:<out>/bus.db)')
    .option('--namespace <ns>', 'the new run\'s namespace', 'replay')
    .option('--relocate <old=new...>', 'recorded checkpoint locations that moved: a path prefix and its new place')
    .option('--json', 'print the report as JSON');
  addRunFlags(cmd)
    .addHelpText('after', HELP)
    .action(async (opts: ReplayCliOptions & Record<string, unknown>) => {
      const { existsSync, mkdtempSync, rmSync } = await import('node:fs');
      const { join, resolve } = await import('node:path');
      const { tmpdir } = await import('node:os');
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { openArchive, busRecording } = await import('../../archive/read-archive.ts');
      const { loadRecordedRun, parseRelocations, checkpointDir } = await import('../../archive/replay-recording.ts');
      const { createLogger } = await import('../../util/log.ts');
      const { runOverrides } = await import('../run-options.ts');
      const log = createLogger({ cmd: 'replay' });
      const relocations = parseRelocations(opts.relocate);
      const overrides = runOverrides(opts);
      const fromStage = opts.fromStage ?? 'prompts';

      // The recording.
      if (Boolean(opts.from) === Boolean(opts.fromBus)) throw new Error('give one of --from DIR (an archive or a run directory) and --from-bus URL');
      let sourceBus: Awaited<ReturnType<typeof openBus>> | null = null;
      let recording;
      if (opts.fromBus) {
        sourceBus = await openBus(opts.fromBus, { readOnly: true });
        recording = busRecording(sourceBus, opts.fromNamespace ?? 'run');
      } else if (existsSync(join(opts.from!, 'manifest.json'))) {
        recording = openArchive(opts.from!);
        if (opts.fromNamespace && opts.fromNamespace !== (recording.namespace ?? '')) {
          throw new Error(`--from-namespace ${opts.fromNamespace}: the archive ${opts.from} holds namespace ${JSON.stringify(recording.namespace ?? null)}`);
        }
      } else if (existsSync(join(opts.from!, 'bus.db'))) {
        sourceBus = await openBus(`embedded:${join(opts.from!, 'bus.db')}`, { readOnly: true });
        recording = busRecording(sourceBus, opts.fromNamespace ?? 'run');
      } else {
        throw new Error(`${opts.from}: neither an archive (no manifest.json) nor a run directory (no bus.db)`);
      }

      try {
        const run = await loadRecordedRun(recording);
        if (opts.verify) {
          if (Object.keys(overrides).length > 0 || opts.config) {
            throw new Error(`--verify re-derives with the recorded config; config flags (${Object.keys(overrides).join(', ') || '--config'}) apply to a replay into a new run (without --verify)`);
          }
          if (opts.fromStage && opts.fromStage !== 'prompts') throw new Error('--from-stage applies to a replay into a new run, not to --verify');
          const { verifyRun, VERIFY_STAGES } = await import('../../archive/verify.ts');
          const rounds = opts.verifyRounds ? parseList(opts.verifyRounds, '--verify-rounds').map((r) => positiveInt(r, '--verify-rounds')) : undefined;
          const stages = opts.verifyStages ? parseList(opts.verifyStages, '--verify-stages').map((s) => oneOf(s, VERIFY_STAGES, '--verify-stages')) : undefined;
          const workDir = opts.out ? resolve(opts.out) : mkdtempSync(join(tmpdir(), 'dice-verify-'));
          try {
            const report = await verifyRun(run, { rounds, stages, relocations, workDir, log });
            if (opts.json) console.log(JSON.stringify(report, null, 2));
            else printVerify(report);
            if (!report.identical) process.exitCode = 1;
          } finally {
            if (!opts.out) rmSync(workDir, { recursive: true, force: true });
          }
          return;
        }

        const { replayRun, checkReplayPlan, REPLAY_FROM_STAGES } = await import('../../archive/replay-run.ts');
        const { loadRunConfig } = await import('../../config/schema.ts');
        const { MetricsEmitter } = await import('../../service/metrics.ts');
        const { writeFileSync, mkdirSync } = await import('node:fs');
        if (!opts.out) throw new Error('a replay into a new run needs --out NEWDIR (or use --verify)');
        const stage = oneOf(fromStage, REPLAY_FROM_STAGES, '--from-stage');
        // The start of the lineage must be there and unaltered before anything of the new run is made.
        const verified = new Set<string>();
        for (const version of [0, -1]) checkpointDir(run, version, relocations, verified);
        // The recorded config is the base the flags change (or --config, when given, replaces it).
        const scratch = mkdtempSync(join(tmpdir(), 'dice-replay-config-'));
        let config;
        try {
          const base = opts.config ?? join(scratch, 'recorded-config.json');
          if (!opts.config) writeFileSync(base, `${JSON.stringify(run.config, null, 2)}\n`);
          config = loadRunConfig(base, overrides);
        } finally {
          rmSync(scratch, { recursive: true, force: true });
        }
        checkReplayPlan(run, config, stage);
        mkdirSync(opts.out, { recursive: true });
        // The new run's directory is guarded like dice run's: one at a time, the same replay on resume, no foreign checkpoints.
        const { openRunDirectory } = await import('../../service/run-directory.ts');
        const { embeddedBusPath } = await import('../../../topics/open-bus.ts');
        const busUrl = opts.bus ?? `embedded:${join(opts.out, 'bus.db')}`;
        const runDir = openRunDirectory({
          outDir: opts.out,
          identity: { replayOf: resolve(recording.source), fromStage: stage, config, namespace: opts.namespace, bus: embeddedBusPath(busUrl) ?? busUrl },
          versions: Array.from({ length: config.rounds }, (_, i) => i + 1),
          busFile: embeddedBusPath(busUrl),
        });
        writeFileSync(join(opts.out, 'recorded-config.json'), `${JSON.stringify(run.config, null, 2)}\n`);
        const bus = await openBus(busUrl).catch((err) => {
          runDir.release();
          throw err;
        });
        if (sourceBus && bus.url === sourceBus.url && opts.namespace === (opts.fromNamespace ?? 'run')) {
          await bus.close();
          runDir.release();
          throw new Error(`the new run would write into the recorded run (${bus.url}, namespace ${opts.namespace}): give another --namespace or --bus`);
        }
        const metrics = new MetricsEmitter(bus, opts.namespace);
        try {
          const replayed = await replayRun({ run, bus, namespace: opts.namespace, outDir: opts.out, config, fromStage: stage, relocations, verified, log, metrics });
          if (opts.json) {
            console.log(JSON.stringify({ fromStage: stage, taken: replayed.taken, checkpoints: replayed.checkpoints, rounds: replayed.result.rounds }, null, 2));
          } else {
            for (const c of replayed.checkpoints) {
              const verdict = c.recordedSha256 === null ? 'not in the recording' : c.identical ? 'identical to the recording' : `recorded ${c.recordedSha256.slice(0, 16)}`;
              console.log(`v${c.version}  ${c.sha256.slice(0, 16)}  ${verdict}`);
            }
          }
        } finally {
          await metrics.flush().catch(() => undefined);
          await bus.close();
          runDir.release();
        }
      } finally {
        await sourceBus?.close();
      }
    });
}

function printVerify(report: import('../../archive/verify.ts').VerifyReport): void {
  for (const w of report.warnings) console.log(`warning: ${w}`);
  console.log(`${'round'.padEnd(6)}${'stage'.padEnd(13)}${'records'.padStart(8)}  result`);
  for (const v of report.stages) {
    let result = 'identical';
    if (!v.identical && v.first) {
      const at = v.first.path ? ` at ${v.first.path}` : '';
      result = `DIFFERENT (${v.differing} of ${v.records}): ${v.topic} key ${v.first.key}${at}: recorded ${JSON.stringify(v.first.recorded)}, re-derived ${JSON.stringify(v.first.rederived)}`;
    }
    console.log(`${String(v.round).padEnd(6)}${v.stage.padEnd(13)}${String(v.records).padStart(8)}  ${result}`);
  }
  const differing = report.stages.filter((v) => !v.identical).length;
  console.log(differing === 0 ? `every stage identical (${report.stages.length} stage checks)` : `${differing} of ${report.stages.length} stage checks differ`);
}

function parseList(value: string, flag: string): string[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new Error(`${flag}: expected a comma-separated list, got ${JSON.stringify(value)}`);
  return items;
}

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${flag}: ${JSON.stringify(value)} is not a round number (1, 2, …)`);
  return n;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], flag: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new Error(`${flag}: ${JSON.stringify(value)} is not one of ${allowed.join(', ')}`);
  return value as T;
}
