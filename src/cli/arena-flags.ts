/**
 * Flag parsing shared by the arena commands (`dice start`, `dice experiment`). The testbed is
 * imported only when a command runs: every command module loads at CLI start-up.
 */
import type { MainJobSettings } from '../testbed/main-job.ts';

/** A non-negative integer flag (undefined when not given). */
export function parseIntFlag(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

/** The main-job settings of `--preset NAME`. */
export async function loadArenaPreset(name: string): Promise<MainJobSettings> {
  const { MAIN_JOB_PRESETS } = await import('../testbed/main-job.ts');
  const settings = MAIN_JOB_PRESETS[name];
  if (!settings) throw new Error(`--preset: unknown preset "${name}" (known: ${Object.keys(MAIN_JOB_PRESETS).join(', ')})`);
  return settings;
}
