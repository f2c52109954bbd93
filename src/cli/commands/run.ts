import { resolve } from 'node:path';
import type { Command } from 'commander';
import { addRunFlags, runOverrides } from '../run-options.ts';
import { addMonitorFlags } from '../../monitor/flags.ts';

/** How long `dice run --monitor` keeps serving after the run, so pages receive its last events. */
const MONITOR_LINGER_MS = 3000;

export function register(program: Command): void {
  const cmd = program
    .command('run')
    .description('run DICE rounds over a prompt file (paper Algorithm 1); resumable: the same command continues an interrupted run')
    .requiredOption('--policy <dir>', 'π_θ(0): the DPO-tuned model to improve (Hugging Face format)')
    .requiredOption('--ref <dir>', 'π_ref(0): its reference model (e.g. the SFT model)')
    .requiredOption('--prompts <file>', 'prompts (JSONL / JSON / Parquet: prompt text or chat messages)')
    .option('--offline <file>', 'offline preference pairs D_offline for experience replay (HF-style prompt/chosen/rejected)')
    .requiredOption('--out <dir>', 'run directory: checkpoints v1, v2, … and (by default) the embedded bus')
    .option('--bus <url>', 'embedded:PATH or kafka://HOST:PORT (default: embedded:<out>/bus.db)')
    .option('--namespace <ns>', 'topic namespace of the run', 'run')
    .option('--allow-config-change', 'resume a run directory with a config (or models, files, bus) other than the one it was started with, on purpose')
    .option('--json', 'print the result as JSON');
  addMonitorFlags(addRunFlags(cmd)).action(async (opts: Record<string, unknown>) => {
    const { join } = await import('node:path');
    const { mkdirSync } = await import('node:fs');
    const { loadRunConfig } = await import('../../config/schema.ts');
    const { openBus } = await import('../../../topics/open-bus.ts');
    const { runDice } = await import('../../service/run.ts');
    const { MetricsEmitter } = await import('../../service/metrics.ts');
    const { createLogger } = await import('../../util/log.ts');
    const { openRunDirectory } = await import('../../service/run-directory.ts');
    const { embeddedBusPath } = await import('../../../topics/open-bus.ts');
    const config = loadRunConfig(opts.config as string | undefined, runOverrides(opts));
    const out = opts.out as string;
    mkdirSync(out, { recursive: true });
    const busUrl = (opts.bus as string | undefined) ?? `embedded:${join(out, 'bus.db')}`;
    const log = createLogger({ cmd: 'run' });
    // Before the bus is opened (opening creates it): lock, same config as the first start, no foreign checkpoints.
    const runDir = openRunDirectory({
      outDir: out,
      identity: runIdentity(opts, config, embeddedBusPath(busUrl) ?? busUrl),
      versions: Array.from({ length: config.rounds }, (_, i) => i + 1),
      busFile: embeddedBusPath(busUrl),
      allowIdentityChange: opts.allowConfigChange === true,
    });
    if (runDir.changed.length > 0) log.warn('resuming with a changed config (--allow-config-change)', { changed: runDir.changed });
    const bus = await openBus(busUrl).catch((err) => {
      runDir.release();
      throw err;
    });
    const metrics = new MetricsEmitter(bus, opts.namespace as string);
    const { startMonitorFromFlags } = await import('../../monitor/flags.ts');
    const monitor = await startMonitorFromFlags(opts as { monitor?: string; monitorToken?: string }, bus, opts.namespace as string);
    if (monitor) log.info('monitor', { url: monitor.url });
    const stop = async () => {
      log.warn('interrupted: committed work is kept; run the same command to continue');
      await bus.close().catch(() => undefined);
      process.exit(130);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      const result = await runDice({
        bus,
        namespace: opts.namespace as string,
        config,
        policyDir: opts.policy as string,
        refDir: opts.ref as string,
        promptsFile: opts.prompts as string,
        offlineFile: opts.offline as string | undefined,
        outDir: out,
        log,
        metrics,
      });
      if (opts.json) {
        console.log(JSON.stringify({ checkpoints: result.checkpoints, rejected: result.rejected, rounds: result.rounds }, null, 2));
      } else {
        for (const c of result.checkpoints) {
          console.log(`v${c.version}  parent ${c.parentVersion ?? '-'}  reference ${c.referenceVersion ?? '-'}  ${c.sha256.slice(0, 16)}  ${c.location}`);
        }
        for (const c of result.rejected) console.log(`v${c.version}  rejected by the health gate (never used): ${c.gate?.reasons.join('; ')}`);
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      if (monitor) {
        // The monitor reads the run's topics a little behind it: give open pages the final events.
        await metrics.flush();
        await new Promise((r) => setTimeout(r, MONITOR_LINGER_MS));
        await monitor.close();
      }
      await bus.close();
      runDir.release();
    }
  });
}

/** What a run directory's later starts must agree on (see src/service/run-directory.ts). */
function runIdentity(opts: Record<string, unknown>, config: unknown, bus: string): Record<string, unknown> {
  const path = (p: unknown) => (typeof p === 'string' ? resolve(p) : null);
  return {
    config,
    policy: path(opts.policy),
    ref: path(opts.ref),
    prompts: path(opts.prompts),
    offline: path(opts.offline),
    namespace: opts.namespace,
    bus,
  };
}
