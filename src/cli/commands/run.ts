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
    .option('--json', 'print the result as JSON');
  addMonitorFlags(addRunFlags(cmd)).action(async (opts: Record<string, unknown>) => {
    const { join } = await import('node:path');
    const { mkdirSync } = await import('node:fs');
    const { loadRunConfig } = await import('../../config/schema.ts');
    const { openBus } = await import('../../../topics/open-bus.ts');
    const { runDice } = await import('../../service/run.ts');
    const { MetricsEmitter } = await import('../../service/metrics.ts');
    const { createLogger } = await import('../../util/log.ts');
    const config = loadRunConfig(opts.config as string | undefined, runOverrides(opts));
    const out = opts.out as string;
    mkdirSync(out, { recursive: true });
    const bus = await openBus((opts.bus as string | undefined) ?? `embedded:${join(out, 'bus.db')}`);
    const log = createLogger({ cmd: 'run' });
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
        console.log(JSON.stringify({ checkpoints: result.checkpoints, rounds: result.rounds }, null, 2));
      } else {
        for (const c of result.checkpoints) {
          console.log(`v${c.version}  parent ${c.parentVersion ?? '-'}  reference ${c.referenceVersion ?? '-'}  ${c.sha256.slice(0, 16)}  ${c.location}`);
        }
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
    }
  });
}
