import type { Command } from 'commander';
import { addRunFlags, runOverrides } from '../run-options.ts';
import { addMonitorFlags } from '../../monitor/flags.ts';

export function register(program: Command): void {
  const cmd = program
    .command('serve')
    .description('the always-on DICE service: consumes the prompts topic forever; a round runs whenever N fresh prompts are scored')
    .option('--role <roles>', 'sampler | scorer | trainer | all (comma-separated)', 'all')
    .option('--policy <dir>', 'π_θ(0) (needed once per namespace: it is published on the checkpoints topic)')
    .option('--ref <dir>', 'π_ref(0)')
    .option('--offline <file>', 'offline preference pairs to put on the offline topic')
    .option('--out <dir>', 'where the trainer writes checkpoints', '.dice/serve')
    .option('--bus <url>', 'embedded:PATH or kafka://HOST:PORT', process.env.DICE_BUS ?? 'embedded:./.dice/bus.db')
    .option('--namespace <ns>', 'topic namespace (default: none, e.g. topic "prompts")');
  addMonitorFlags(addRunFlags(cmd)).action(async (opts: Record<string, unknown>) => {
    const { loadRunConfig } = await import('../../config/schema.ts');
    const { openBus } = await import('../../../topics/open-bus.ts');
    const { serveDice } = await import('../../service/serve.ts');
    const { MetricsEmitter } = await import('../../service/metrics.ts');
    const { createLogger } = await import('../../util/log.ts');
    const { startMonitorFromFlags } = await import('../../monitor/flags.ts');
    const roleText = String(opts.role);
    const roles = new Set(roleText === 'all' ? ['sampler', 'scorer', 'trainer'] : roleText.split(','));
    for (const r of roles) if (!['sampler', 'scorer', 'trainer'].includes(r)) throw new Error(`--role: unknown role ${JSON.stringify(r)} (sampler, scorer, trainer, all)`);
    const config = loadRunConfig(opts.config as string | undefined, runOverrides(opts));
    const namespace = opts.namespace as string | undefined;
    const bus = await openBus(opts.bus as string);
    const log = createLogger({ cmd: 'serve', roles: [...roles].join(',') });
    const metrics = new MetricsEmitter(bus, namespace);
    const monitor = await startMonitorFromFlags(opts as { monitor?: string; monitorToken?: string }, bus, namespace);
    if (monitor) log.info('monitor', { url: monitor.url });
    const stop = new AbortController();
    const onSignal = (signal: string) => {
      log.info('stopping: finishing and committing the work in hand', { signal });
      stop.abort();
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    try {
      await serveDice({
        bus,
        namespace,
        config,
        roles: roles as Set<'sampler' | 'scorer' | 'trainer'>,
        policyDir: opts.policy as string | undefined,
        refDir: opts.ref as string | undefined,
        offlineFile: opts.offline as string | undefined,
        outDir: opts.out as string,
        log,
        metrics,
        stop: stop.signal,
      });
    } finally {
      await monitor?.close();
      await bus.close();
    }
    log.info('stopped');
  });
}
