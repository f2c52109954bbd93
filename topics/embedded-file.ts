import Database from 'better-sqlite3';
import { existsSync, statSync } from 'node:fs';

/**
 * Opening the embedded bus's SQLite file, checked: a damaged file is an error naming the file and
 * what to do, before any stage reads from it (SQLite has no checksums, so damage would otherwise
 * surface later as an SqliteError deep inside a stage). `PRAGMA quick_check` walks every b-tree page
 * (O(file size), no index cross-check): milliseconds for a run's bus.
 */
export interface BusFileOptions {
  /** Refuse to create the file (read-only commands: tail, topics list, monitor, archive). */
  mustExist?: boolean;
}

export class DamagedBusError extends Error {
  constructor(readonly file: string, problem: string) {
    super(
      `${file}: the embedded bus is damaged (${problem}). Nothing was read from it. ` +
        `Restore it from a copy, or move it (with its -wal and -shm files) away and start again; ` +
        `checkpoints next to it are kept, and a run refuses to start over them`,
    );
    this.name = 'DamagedBusError';
  }
}

export function openBusDatabase(file: string, options: BusFileOptions = {}): Database.Database {
  if (options.mustExist && !existsSync(file)) {
    throw new Error(`${file}: no embedded bus there (read-only commands never create one): check --bus`);
  }
  if (existsSync(file) && !statSync(file).isFile()) throw new Error(`${file}: not a file (the embedded bus is a SQLite file)`);
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: options.mustExist ?? false });
    const rows = db.pragma('quick_check') as Array<{ quick_check: string }>;
    const problems = rows.map((r) => r.quick_check.replace(/\s*\n\s*/g, '; ')).filter((r) => r !== 'ok');
    if (problems.length > 0) throw new DamagedBusError(file, `quick_check: ${problems.slice(0, 3).join('; ')}${problems.length > 3 ? `; and ${problems.length - 3} more` : ''}`);
    return db;
  } catch (err) {
    db?.close();
    if (err instanceof DamagedBusError) throw err;
    const code = (err as { code?: string }).code ?? '';
    if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) throw new DamagedBusError(file, (err as Error).message);
    throw err;
  }
}
