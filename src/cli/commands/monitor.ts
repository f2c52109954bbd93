import type { Command } from 'commander';
import { BUS_OPTION } from '../../../topics/open-bus.ts';

interface MonitorCliOptions {
  bus: string;
  host: string;
  port: string;
  token?: string;
  namespace?: string;
  lag?: string[];
  pollMs: string;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--port must be an integer 0..65535, got ${JSON.stringify(value)}`);
  return n;
}

export function register(program: Command): void {
  program
    .command('monitor')
    .description("live dashboard of a run (read-only): reads the run's metrics and checkpoints topics and serves a page + websocket")
    .option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)
    .option('--namespace <ns>', 'topic namespace of the run to watch (as given to dice run/serve)')
    .option('--host <host>', 'address to bind; anything but loopback needs --token', '127.0.0.1')
    .option('--port <port>', 'port for the page and the websocket (/ws); 0 picks a free one', '8787')
    .option('--token <token>', 'require this token from every client (open the page with ?token=...); env DICE_MONITOR_TOKEN', process.env.DICE_MONITOR_TOKEN)
    .option('--lag <group:topic>', 'also chart the lag of a consumer group on a topic (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--poll-ms <ms>', 'how often to observe topic throughput and lag (0: off)', '2000')
    .action(async (opts: MonitorCliOptions) => {
      const { openBus } = await import('../../../topics/open-bus.ts');
      const { startMonitor } = await import('../../monitor/server.ts');
      const pollIntervalMs = Number(opts.pollMs);
      if (!Number.isFinite(pollIntervalMs) || pollIntervalMs < 0) throw new Error(`--poll-ms must be a number ≥ 0, got ${JSON.stringify(opts.pollMs)}`);
      const lagGroups = (opts.lag ?? []).map((spec) => {
        const colon = spec.lastIndexOf(':');
        if (colon <= 0 || colon === spec.length - 1) throw new Error(`--lag expects GROUP:TOPIC, got ${JSON.stringify(spec)}`);
        return { groupId: spec.slice(0, colon), topics: [spec.slice(colon + 1)] };
      });
      const bus = await openBus(opts.bus, { readOnly: true });
      let monitor;
      try {
        monitor = await startMonitor({ bus, host: opts.host, port: port(opts.port), token: opts.token, namespace: opts.namespace, lagGroups, pollIntervalMs });
      } catch (err) {
        await bus.close();
        throw err;
      }
      // The token is in the URL printed here; that is where the user needs it.
      console.log(`dice monitor: watching ${bus.url}${opts.namespace ? ` namespace ${opts.namespace}` : ''} at ${monitor.url}`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await monitor.close();
      await bus.close();
    });
}
