import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * A run directory (`dice run --out DIR`) guarded against what an operator can get wrong:
 *
 * - one run at a time: a lock held for the life of the process (an exclusive SQLite lock on
 *   DIR/.dice-lock, i.e. an OS file lock, so a SIGKILLed holder frees it at once — no stale lock files);
 * - the run's identity (config, models, input files, namespace, bus) is stored in DIR/run.json on the
 *   first start; a later start with another one is an error naming the keys that differ, unless the
 *   caller overrides it on purpose (`--allow-config-change`);
 * - checkpoints: a run writes only checkpoint directories it claimed in run.json (v1…vR of its first
 *   start), so a directory left by another run is never overwritten;
 * - the progress lives on the bus: an embedded bus that is missing or empty while checkpoints of an
 *   earlier start are there is an error, not a silent fresh start over them.
 */
export const RUN_FILE = 'run.json';
const RUN_FORMAT = 'dice-run/1';
const LOCK_FILE = '.dice-lock';
const HOLDER_FILE = '.dice-lock.holder';

export interface RunDirectoryOptions {
  outDir: string;
  /** What makes the run what it is; compared key by key (nested objects as dotted keys) on every later start. */
  identity: Record<string, unknown>;
  /** Checkpoint versions this start will write (1..rounds). */
  versions: number[];
  /** The embedded bus file holding the run's progress; null for Kafka. */
  busFile: string | null;
  /** Accept another identity on purpose (it replaces the stored one). */
  allowIdentityChange?: boolean;
  /** The flag that allows it, for messages. */
  overrideFlag?: string;
}

interface RunFile {
  format: typeof RUN_FORMAT;
  createdAt: string;
  identity: Record<string, unknown>;
  /** Checkpoint directories (e.g. "v1") this run may write. */
  checkpoints: string[];
}

export interface RunDirectory {
  readonly dir: string;
  /** Keys whose values changed, when the identity was changed on purpose (empty otherwise). */
  readonly changed: string[];
  /** True when an earlier start left run.json (a resume). */
  readonly resumed: boolean;
  release(): void;
}

export function openRunDirectory(options: RunDirectoryOptions): RunDirectory {
  const dir = resolve(options.outDir);
  mkdirSync(dir, { recursive: true });
  const lock = takeLock(dir);
  try {
    const runFile = join(dir, RUN_FILE);
    const stored = existsSync(runFile) ? readRunFile(runFile) : null;
    const changes = stored ? identityChanges(stored.identity, options.identity) : [];
    if (changes.length > 0 && !options.allowIdentityChange) {
      throw new Error(
        `${dir} holds a run started with another config: ${changes.map((c) => c.text).join('; ')}. ` +
          `Resume with the same flags, choose another --out for a new run, or pass ${options.overrideFlag ?? '--allow-config-change'} to continue this one with the new config on purpose`,
      );
    }
    const claimed = new Set(stored?.checkpoints ?? []);
    const present = checkpointDirs(dir);
    const foreign = present.filter((name) => !claimed.has(name));
    if (foreign.length > 0) {
      throw new Error(
        `${join(dir, foreign[0])}${foreign.length > 1 ? ` (and ${foreign.slice(1).join(', ')})` : ''} exists but was not written by this run` +
          `${stored ? '' : ` (there is no ${RUN_FILE})`}: a run never overwrites checkpoints it did not write; move ${foreign.length > 1 ? 'them' : 'it'} away or choose another --out`,
      );
    }
    if (options.busFile !== null && present.length > 0 && busIsEmpty(options.busFile)) {
      throw new Error(
        `${options.busFile} is ${existsSync(options.busFile) ? 'empty' : 'missing'}, but ${dir} holds checkpoints ${present.join(', ')} of an earlier start: ` +
          `the bus holds the run's progress, so starting afresh would overwrite them. Restore the bus, or start a new run in another --out`,
      );
    }
    const next: RunFile = {
      format: RUN_FORMAT,
      createdAt: stored?.createdAt ?? new Date().toISOString(),
      identity: options.identity,
      checkpoints: [...new Set([...claimed, ...options.versions.map((v) => `v${v}`)])].sort(byVersion),
    };
    writeJsonAtomic(runFile, next);
    return {
      dir,
      changed: changes.map((c) => c.key),
      resumed: stored !== null,
      release: () => lock.release(),
    };
  } catch (err) {
    lock.release();
    throw err;
  }
}

function takeLock(dir: string): { release(): void } {
  const db = new Database(join(dir, LOCK_FILE), { timeout: 0 });
  try {
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') {
      throw new Error(`another dice run holds ${dir}${holderText(dir)}: wait for it to finish, or choose another --out`);
    }
    throw err;
  }
  const holder = join(dir, HOLDER_FILE);
  writeFileSync(holder, `${JSON.stringify({ pid: process.pid, host: hostname(), since: new Date().toISOString() })}\n`);
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      db.exec('COMMIT');
      db.close();
    },
  };
}

function holderText(dir: string): string {
  try {
    const h = JSON.parse(readFileSync(join(dir, HOLDER_FILE), 'utf8')) as { pid: number; host: string; since: string };
    return ` (pid ${h.pid} on ${h.host}, since ${h.since})`;
  } catch {
    return '';
  }
}

function readRunFile(path: string): RunFile {
  let parsed: RunFile;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as RunFile;
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message}); it records the run's config: restore it, or choose another --out`);
  }
  if (parsed.format !== RUN_FORMAT || typeof parsed.identity !== 'object' || !Array.isArray(parsed.checkpoints)) {
    throw new Error(`${path}: not a ${RUN_FORMAT} file`);
  }
  return parsed;
}

/** Leaf values by dotted key. */
function flatten(value: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, JSON.stringify(value ?? null));
  return out;
}

export function identityChanges(before: Record<string, unknown>, after: Record<string, unknown>): Array<{ key: string; text: string }> {
  const a = flatten(before);
  const b = flatten(after);
  const keys = [...new Set([...a.keys(), ...b.keys()])].sort();
  return keys
    .filter((k) => (a.get(k) ?? 'null') !== (b.get(k) ?? 'null'))
    .map((k) => ({ key: k, text: `${k} was ${a.get(k) ?? 'unset'}, now ${b.get(k) ?? 'unset'}` }));
}

/** Checkpoint directories vN (N ≥ 1) with anything in them. */
function checkpointDirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && /^v[1-9]\d*$/.test(e.name) && readdirSync(join(dir, e.name)).length > 0)
    .map((e) => e.name)
    .sort(byVersion);
}

function busIsEmpty(file: string): boolean {
  return !existsSync(file) || statSync(file).size === 0;
}

function byVersion(a: string, b: string): number {
  return Number(a.slice(1)) - Number(b.slice(1));
}

function writeJsonAtomic(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}
