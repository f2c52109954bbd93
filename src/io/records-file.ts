/**
 * The one reader of record files (prompts, offline pairs, anything `dice produce`/`run`/`score`
 * takes): JSONL, a JSON array, or Parquet (parquet-wasm → Arrow), chosen by extension or `format`.
 * Yields plain objects; every error names the file and the line (JSONL), element (JSON) or row
 * (Parquet). Text must be valid UTF-8 (decoded with a fatal decoder, never patched with U+FFFD).
 * Also the one JSONL writer.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { once } from 'node:events';
import { extname } from 'node:path';
import { DataType, tableFromIPC, type Data, type Field } from 'apache-arrow';

export type RecordsFormat = 'jsonl' | 'json' | 'parquet';

export interface RecordEntry {
  value: Record<string, unknown>;
  /** 0-based index of the record in the file. */
  index: number;
  /** Where it is, for messages: `file.jsonl:12`, `file.json[3]`, `file.parquet row 7`. */
  location: string;
}

/** A record the file holds but that cannot be read as one (bad JSON, not UTF-8, not an object, a bad Parquet cell). */
export interface BadRecordEntry {
  /** 0-based position of the record in the file (bad records count, so fixing one keeps the others' positions). */
  index: number;
  location: string;
  problem: string;
  /** The record's bytes as they are in the file (JSONL: the line), for the dead-letter record. */
  raw: Uint8Array;
}

/** Each record of a file, read or not: what a caller that dead-letters per record iterates. */
export type RecordOrProblem = ({ ok: true } & RecordEntry) | ({ ok: false } & BadRecordEntry);

/** An error in a record file; the message starts with the location. */
export class RecordsFileError extends Error {
  constructor(readonly location: string, problem: string) {
    super(`${location}: ${problem}`);
    this.name = 'RecordsFileError';
  }
}

export function recordsFormatOf(path: string): RecordsFormat {
  const ext = extname(path.endsWith('.gz') ? path.slice(0, -3) : path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  if (ext === '.parquet' || ext === '.pq') return 'parquet';
  throw new RecordsFileError(path, `cannot tell the format from the extension "${ext}": use .jsonl, .json or .parquet (or pass a format)`);
}

/** Plain objects from a record file. */
export async function* readRecords(path: string, format?: RecordsFormat): AsyncGenerator<Record<string, unknown>> {
  for await (const entry of readRecordEntries(path, format)) yield entry.value;
}

/** Records with their location; the first record that cannot be read throws a RecordsFileError naming it. */
export async function* readRecordEntries(path: string, format?: RecordsFormat): AsyncGenerator<RecordEntry> {
  for await (const entry of readRecordsOrProblems(path, format)) {
    if (!entry.ok) throw new RecordsFileError(entry.location, entry.problem);
    yield entry;
  }
}

/**
 * Every record of a file in order, each either read or with the problem that kept it from being
 * read, so one bad line costs that line only. Problems with the whole file (missing, not JSON as a
 * whole, not Parquet) still throw, before any record is yielded.
 */
export async function* readRecordsOrProblems(path: string, format: RecordsFormat = recordsFormatOf(path)): AsyncGenerator<RecordOrProblem> {
  if (format === 'jsonl') yield* readJsonl(path);
  else if (format === 'json') yield* readJsonArray(path);
  else yield* readParquetRecords(path);
}

const fatal = new TextDecoder('utf-8', { fatal: true });

function describeJson(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

async function* readJsonl(path: string): AsyncGenerator<RecordOrProblem> {
  let lineNo = 0;
  let index = 0;
  let carry: Buffer | null = null;
  const parseLine = (bytes: Buffer): RecordOrProblem | null => {
    lineNo++;
    const location = `${path}:${lineNo}`;
    const bad = (problem: string): RecordOrProblem => ({ ok: false, index: index++, location, problem, raw: Uint8Array.from(bytes) });
    let text: string;
    try {
      text = fatal.decode(bytes);
    } catch {
      return bad('is not valid UTF-8');
    }
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (lineNo === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
    if (text.trim() === '') return null;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return bad(`invalid JSON (${err instanceof Error ? err.message : String(err)})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      return bad(`expected a JSON object per line, got ${describeJson(value)}`);
    }
    return { ok: true, value: value as Record<string, unknown>, index: index++, location };
  };
  const stream = createReadStream(path);
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      const buf: Buffer = carry ? Buffer.concat([carry, chunk]) : chunk;
      let start = 0;
      for (let nl = buf.indexOf(10, start); nl >= 0; nl = buf.indexOf(10, start)) {
        const entry = parseLine(buf.subarray(start, nl));
        start = nl + 1;
        if (entry) yield entry;
      }
      carry = start < buf.length ? Buffer.from(buf.subarray(start)) : null;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new RecordsFileError(path, 'no such file');
    throw err;
  } finally {
    stream.destroy();
  }
  if (carry && carry.length > 0) {
    const entry = parseLine(carry);
    if (entry) yield entry;
  }
}

async function readBytes(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new RecordsFileError(path, 'no such file');
    throw err;
  }
}

async function* readJsonArray(path: string): AsyncGenerator<RecordOrProblem> {
  const bytes = await readBytes(path);
  let text: string;
  try {
    text = fatal.decode(bytes);
  } catch {
    throw new RecordsFileError(path, 'is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text.startsWith('\uFEFF') ? text.slice(1) : text);
  } catch (err) {
    throw new RecordsFileError(path, `invalid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!Array.isArray(value)) throw new RecordsFileError(path, `expected a JSON array of records, got ${describeJson(value)}`);
  for (const [index, v] of value.entries()) {
    const location = `${path}[${index}]`;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      yield { ok: false, index, location, problem: `expected a JSON object, got ${describeJson(v)}`, raw: new TextEncoder().encode(JSON.stringify(v) ?? 'null') };
      continue;
    }
    yield { ok: true, value: v as Record<string, unknown>, index, location };
  }
}

async function* readParquetRecords(path: string): AsyncGenerator<RecordOrProblem> {
  const bytes = await readBytes(path);
  const { readParquet } = await import('parquet-wasm');
  let ipc: Uint8Array;
  try {
    ipc = readParquet(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).intoIPCStream();
  } catch (err) {
    throw new RecordsFileError(path, `not a readable Parquet file (${err instanceof Error ? err.message : String(err)})`);
  }
  const table = tableFromIPC(ipc);
  let index = 0;
  for (const batch of table.batches) {
    const fields = batch.schema.fields;
    for (let i = 0; i < batch.numRows; i++) {
      const location = `${path} row ${index}`;
      const value: Record<string, unknown> = {};
      try {
        fields.forEach((f, c) => {
          value[f.name] = arrowToPlain(batch.data.children[c], f, i, location, f.name);
        });
      } catch (err) {
        if (!(err instanceof RecordsFileError)) throw err;
        yield { ok: false, index: index++, location, problem: err.message.slice(location.length + 2), raw: new Uint8Array(0) };
        continue;
      }
      yield { ok: true, value, index: index++, location };
    }
  }
}

/** One Arrow cell as a plain JS value (strings decoded fatally, int64 as number when exact). */
function arrowToPlain(data: Data, field: Field, i: number, location: string, path: string): unknown {
  if (data.nullCount > 0 && !data.getValid(i)) return null;
  const type = data.type as DataType;
  const offsets = data.valueOffsets as Int32Array | BigInt64Array | undefined;
  if (DataType.isUtf8(type) || DataType.isLargeUtf8(type)) {
    const bytes = (data.values as Uint8Array).subarray(Number(offsets![i]), Number(offsets![i + 1]));
    try {
      return fatal.decode(bytes);
    } catch {
      throw new RecordsFileError(location, `column ${path} is not valid UTF-8`);
    }
  }
  if (DataType.isBinary(type) || DataType.isLargeBinary(type)) {
    return (data.values as Uint8Array).slice(Number(offsets![i]), Number(offsets![i + 1]));
  }
  if (DataType.isBool(type)) {
    const bit = data.offset + i;
    return ((data.values as Uint8Array)[bit >> 3] & (1 << (bit & 7))) !== 0;
  }
  if (DataType.isInt(type) || DataType.isFloat(type)) {
    const v = (data.values as ArrayLike<number | bigint>)[i];
    if (typeof v === 'bigint') {
      if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw new RecordsFileError(location, `column ${path}: ${v} does not fit a JavaScript number exactly`);
      }
      return Number(v);
    }
    if (DataType.isFloat(type) && type.precision === 0) return Number(v); // half floats are stored as uint16
    return v;
  }
  if (DataType.isList(type) || DataType.isLargeList(type)) {
    const start = Number(offsets![i]);
    const end = Number(offsets![i + 1]);
    const child = data.children[0];
    const out: unknown[] = [];
    for (let j = start; j < end; j++) out.push(arrowToPlain(child, type.children[0], j, location, `${path}[${j - start}]`));
    return out;
  }
  if (DataType.isFixedSizeList(type)) {
    const n = type.listSize;
    const out: unknown[] = [];
    for (let j = i * n; j < (i + 1) * n; j++) out.push(arrowToPlain(data.children[0], type.children[0], j, location, `${path}[${j - i * n}]`));
    return out;
  }
  if (DataType.isStruct(type)) {
    const out: Record<string, unknown> = {};
    type.children.forEach((f, c) => {
      out[f.name] = arrowToPlain(data.children[c], f, i, location, `${path}.${f.name}`);
    });
    return out;
  }
  if (DataType.isDictionary(type)) {
    const key = Number((data.values as ArrayLike<number | bigint>)[i]);
    const dict = data.dictionary!.data[0];
    return arrowToPlain(dict, field, key, location, path);
  }
  if (DataType.isTimestamp(type) || DataType.isDate(type)) {
    const v = (data.values as ArrayLike<number | bigint>)[i];
    return Number(v);
  }
  throw new RecordsFileError(location, `column ${path} has type ${type}, which record files do not support`);
}

// ---- writing ----

/** JSON for records holding typed arrays: Int32Array etc. → number lists, bytes → base64, bigint → number. */
export function toJsonLine(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number>, Number);
    if (typeof v === 'bigint') return Number(v);
    return v;
  });
}

/** Writes records as JSONL (one JSON object per line, UTF-8). */
export async function writeJsonl(path: string, records: Iterable<unknown> | AsyncIterable<unknown>): Promise<number> {
  const out = createWriteStream(path);
  let n = 0;
  try {
    for await (const r of records as AsyncIterable<unknown>) {
      if (!out.write(`${toJsonLine(r)}\n`)) await once(out, 'drain');
      n++;
    }
  } finally {
    out.end();
    await once(out, 'close');
  }
  return n;
}
