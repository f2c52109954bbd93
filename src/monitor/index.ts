/** The live monitor: `startMonitor` (server.ts), the `--monitor` flag helpers (flags.ts). */
export { startMonitor, type Monitor, type MonitorOptions, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN_ORIGIN, CLOSE_TOO_SLOW, MONITOR_PROTOCOL } from './server.ts';
export { addMonitorFlags, parseMonitorAddress, startMonitorFromFlags } from './flags.ts';
export type { MonitorEvent } from './events.ts';
export type { LagGroup } from './bus-source.ts';
