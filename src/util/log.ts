/**
 * Structured logs: one JSON object per line on stderr (machine-readable: `DICE_LOG=json`, or when
 * stderr is not a terminal), or a short human line on a terminal. Levels: debug < info < warn < error
 * (DICE_LOG_LEVEL, default info). stdout stays free for command output (tables, --json).
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(bindings: Record<string, unknown>): Logger;
}

export function createLogger(bindings: Record<string, unknown> = {}, sink: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const min = ORDER[(process.env.DICE_LOG_LEVEL as LogLevel) ?? 'info'] ?? ORDER.info;
  const json = process.env.DICE_LOG === 'json' || (process.env.DICE_LOG !== 'pretty' && !process.stderr.isTTY);
  const write = (level: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[level] < min) return;
    if (json) {
      sink(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...bindings, ...fields }, jsonSafe)}\n`);
    } else {
      const extras = Object.entries({ ...bindings, ...fields })
        .map(([k, v]) => `${k}=${typeof v === 'number' ? formatNumber(v) : JSON.stringify(v, jsonSafe)}`)
        .join(' ');
      sink(`${level === 'info' ? '' : `${level.toUpperCase()} `}${msg}${extras ? `  ${extras}` : ''}\n`);
    }
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
    child: (more) => createLogger({ ...bindings, ...more }, sink),
  };
}

function jsonSafe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

function formatNumber(v: number): string {
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e-3 && Math.abs(v) < 1e6 ? v.toFixed(4) : v.toExponential(3);
}

/** A progress line for long stages on a terminal (nothing when stderr is not one, e.g. CI). */
export class Progress {
  private done = 0;
  private readonly started = Date.now();
  private lastDraw = 0;
  private readonly enabled = Boolean(process.stderr.isTTY) && !process.env.CI;

  constructor(
    private readonly label: string,
    private readonly total: number,
  ) {}

  tick(n = 1, note = ''): void {
    this.done += n;
    const now = Date.now();
    if (!this.enabled || (now - this.lastDraw < 100 && this.done < this.total)) return;
    this.lastDraw = now;
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 1;
    const bar = '█'.repeat(Math.round(frac * width)).padEnd(width, '░');
    const secs = ((now - this.started) / 1000).toFixed(1);
    process.stderr.write(`\r${this.label.padEnd(14)} ${bar} ${this.done}/${this.total} ${secs}s ${note}`.slice(0, 120).padEnd(100));
  }

  finish(): void {
    if (this.enabled) process.stderr.write('\n');
  }
}
