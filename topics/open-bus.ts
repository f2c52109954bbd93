import { resolve as resolvePath } from 'node:path';
import type { Bus } from './bus.ts';
import type { EmbeddedBusOptions } from './embedded.ts';

/** The bus used when none is given: a SQLite file under the working directory. */
export const DEFAULT_BUS_URL = 'embedded:./.dice/bus.db';

/** For CLI commands: `cmd.option(BUS_OPTION.flags, BUS_OPTION.description, BUS_OPTION.defaultValue)`. */
export const BUS_OPTION = {
  flags: '--bus <url>',
  description: 'the bus: embedded:PATH[?sync=full] (SQLite file) or kafka://HOST:PORT[,HOST:PORT...][?options] (env DICE_BUS)',
  defaultValue: process.env.DICE_BUS ?? DEFAULT_BUS_URL,
};

/**
 * Opens a bus from its URL — the one place bus URLs are parsed:
 *   embedded:PATH[?sync=normal|full]   the embedded SQLite bus (PATH relative to the working directory)
 *   kafka://HOST:PORT[,...][?...]       the Kafka bus (topics/kafka.ts, loaded only when asked for)
 * `readOnly`: for commands that only read (an embedded file must exist already).
 */
export async function openBus(url: string = process.env.DICE_BUS ?? DEFAULT_BUS_URL, access: { readOnly?: boolean } = {}): Promise<Bus> {
  if (url.startsWith('embedded:')) {
    const rest = url.slice('embedded:'.length);
    const q = rest.indexOf('?');
    const path = q < 0 ? rest : rest.slice(0, q);
    const params = new URLSearchParams(q < 0 ? '' : rest.slice(q + 1));
    if (path === '') throw new Error(`bus URL ${JSON.stringify(url)} has no path: use embedded:PATH, e.g. ${DEFAULT_BUS_URL}`);
    // Read-only commands (tail, topics list, monitor, archive) never create a bus where there is none.
    const options: EmbeddedBusOptions = { mustExist: access.readOnly ?? false };
    for (const [key, value] of params) {
      if (key === 'sync') {
        if (value !== 'normal' && value !== 'full') throw new Error(`bus URL ${url}: sync must be normal or full, got ${JSON.stringify(value)}`);
        options.synchronous = value;
      } else if (key === 'pollMs') {
        options.maxPollIntervalMs = positiveNumber(url, key, value);
      } else if (key === 'sessionTimeoutMs') {
        options.sessionTimeoutMs = positiveNumber(url, key, value);
      } else {
        throw new Error(`bus URL ${url}: unknown option ${JSON.stringify(key)} (known: sync, pollMs, sessionTimeoutMs)`);
      }
    }
    const { openEmbeddedBus } = await import('./embedded.ts');
    return openEmbeddedBus(path, options);
  }
  if (url.startsWith('kafka://')) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new Error(`bus URL ${JSON.stringify(url)} is not a valid URL: use kafka://HOST:PORT`);
    }
    const { openKafkaBus } = await import('./kafka.ts');
    return openKafkaBus(parsed);
  }
  throw new Error(`unknown bus URL ${JSON.stringify(url)}: use embedded:PATH (e.g. ${DEFAULT_BUS_URL}) or kafka://HOST:PORT`);
}

function positiveNumber(url: string, key: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`bus URL ${url}: ${key} must be a positive number, got ${JSON.stringify(value)}`);
  return n;
}

/** The file of an embedded bus URL (absolute), or null for another kind of bus. */
export function embeddedBusPath(url: string): string | null {
  if (!url.startsWith('embedded:')) return null;
  const rest = url.slice('embedded:'.length);
  const q = rest.indexOf('?');
  return resolvePath(q < 0 ? rest : rest.slice(0, q));
}
