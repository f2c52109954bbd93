import type { Command } from 'commander';
import type { Bus } from '../../topics/bus.ts';
import type { Monitor, MonitorOptions } from './server.ts';

/** `[HOST:]PORT` (IPv6 as `[::1]:PORT`) → host and port; the host defaults to loopback. */
export function parseMonitorAddress(spec: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(spec.trim());
  if (!m) throw new Error(`--monitor expects [HOST:]PORT, e.g. 8787 or 0.0.0.0:8787, got ${JSON.stringify(spec)}`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`--monitor: port ${port} is out of range (0..65535)`);
  const host = m[1] ? m[1].replace(/^\[(.*)\]$/, '$1') : '127.0.0.1';
  return { host, port };
}

/** Adds `--monitor [HOST:]PORT` and `--monitor-token T` to a command (dice run, dice serve). */
export function addMonitorFlags(cmd: Command): Command {
  return cmd
    .option('--monitor <[host:]port>', 'serve the live dashboard (page + read-only websocket) on this address; loopback unless a host is given')
    .option('--monitor-token <token>', 'token every dashboard client must present (required to bind beyond loopback); env DICE_MONITOR_TOKEN', process.env.DICE_MONITOR_TOKEN);
}

/**
 * Starts the monitor a command's `--monitor` flag asks for (null when not asked), reading the run's
 * metrics and checkpoints topics from the run's own bus: the same view `dice monitor` gives from
 * elsewhere, with throughput and lag observations. Close it before closing the bus.
 */
export async function startMonitorFromFlags(
  opts: { monitor?: string; monitorToken?: string },
  bus: Bus,
  namespace: string | undefined,
  extra: Partial<MonitorOptions> = {},
): Promise<Monitor | null> {
  if (opts.monitor === undefined) return null;
  const { startMonitor } = await import('./server.ts');
  return startMonitor({ ...extra, bus, namespace, token: opts.monitorToken, ...parseMonitorAddress(opts.monitor) });
}
