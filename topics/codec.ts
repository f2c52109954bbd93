/**
 * Shared Arrow IPC helpers for the topic contracts: a schema-driven validator (plain JS → typed
 * record, with errors naming the field), a writer (records → Arrow IPC stream, building the column
 * buffers directly so token-id lists are copied, not appended value by value) and a reader (Arrow
 * IPC → records, decoding every string with a *fatal* UTF-8 decoder: Arrow's own reader would
 * silently turn bad bytes into U+FFFD).
 *
 * Supported column types: Utf8, Binary, Int32, Uint32, Float64, Bool, List<…>, Struct<…>.
 * Field metadata carries extra rules: `dice.enum` ("a,b,c": allowed strings), `dice.kind`
 * ("tokens": an int32 list bounded by maxTokens).
 */
import {
  Binary,
  Bool,
  DataType,
  Field,
  Float64,
  Int32,
  List,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  tableToIPC,
  Uint32,
  Utf8,
  type Data,
} from 'apache-arrow';

export interface Limits {
  /** Largest encoded record (bytes). */
  maxRecordBytes: number;
  /** Largest string (UTF-8 bytes). */
  maxStringBytes: number;
  /** Longest token-id list. */
  maxTokens: number;
  /** Longest other list (responses in a group, rows in a batch, chat messages). */
  maxListLength: number;
}

export const defaultLimits: Readonly<Limits> = {
  maxRecordBytes: 64 * 1024 * 1024,
  maxStringBytes: 4 * 1024 * 1024,
  maxTokens: 1 << 20,
  maxListLength: 1 << 16,
};

export function resolveLimits(limits?: Partial<Limits>): Limits {
  return limits ? { ...defaultLimits, ...limits } : defaultLimits;
}

/** A record that breaks its topic's contract; the message names the topic, the field and the problem. */
export class TopicValidationError extends Error {
  constructor(
    readonly topic: string,
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${topic}: ${field ? `${field}: ` : ''}${problem}`);
    this.name = 'TopicValidationError';
  }
}

// ---- schema construction helpers ----

export const utf8 = (name: string, nullable = false, meta?: Record<string, string>) =>
  new Field(name, new Utf8(), nullable, meta ? new Map(Object.entries(meta)) : undefined);
export const enumeration = (name: string, values: readonly string[], nullable = false) =>
  utf8(name, nullable, { 'dice.enum': values.join(',') });
export const int32 = (name: string, nullable = false) => new Field(name, new Int32(), nullable);
export const uint32 = (name: string, nullable = false) => new Field(name, new Uint32(), nullable);
export const float64 = (name: string, nullable = false) => new Field(name, new Float64(), nullable);
export const bool = (name: string, nullable = false) => new Field(name, new Bool(), nullable);
export const binary = (name: string, nullable = false) => new Field(name, new Binary(), nullable);
export const tokens = (name: string, nullable = false) =>
  new Field(name, new List(new Field('item', new Int32(), false)), nullable, new Map([['dice.kind', 'tokens']]));
export const listOf = (name: string, item: DataType, nullable = false) =>
  new Field(name, new List(new Field('item', item, false)), nullable);
export const struct = (fields: Field[]) => new Struct(fields);

// ---- validation (plain JS → typed) ----

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'string') return v.length > 40 ? `a string "${v.slice(0, 40)}…"` : `the string ${JSON.stringify(v)}`;
  if (typeof v === 'number') return `the number ${v}`;
  return typeof v;
}

const encoder = new TextEncoder();
/** In a /u regex a surrogate pair is one code point, so this matches only unpaired surrogates. */
const LONE_SURROGATE = /\p{Surrogate}/u;

/** The string with unpaired surrogates replaced by U+FFFD (safe to encode as UTF-8). */
export function wellFormed(s: string): string {
  return s.replace(/\p{Surrogate}/gu, '\uFFFD');
}
const fatalDecoder = new TextDecoder('utf-8', { fatal: true });

export function utf8ByteLength(s: string): number {
  // Exact count without allocating: 1 byte < 0x80, 2 < 0x800, 4 for a surrogate pair, else 3.
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

interface Ctx {
  topic: string;
  limits: Limits;
  /** Top-level fields not in the schema: error (default) or dropped. */
  extra: 'reject' | 'drop';
}

function fail(ctx: Ctx, path: string, problem: string): never {
  throw new TopicValidationError(ctx.topic, path, problem);
}

function validateField(field: Field, value: unknown, path: string, ctx: Ctx): unknown {
  if (value === undefined || value === null) {
    if (field.nullable) return null;
    return fail(ctx, path, value === undefined ? 'is missing' : 'must not be null');
  }
  const type = field.type;
  if (DataType.isUtf8(type)) {
    if (typeof value !== 'string') return fail(ctx, path, `expected a string, got ${describe(value)}`);
    if (LONE_SURROGATE.test(value)) return fail(ctx, path, 'is not valid Unicode (lone surrogate; cannot be encoded as UTF-8)');
    if (value.length > ctx.limits.maxStringBytes / 3 && utf8ByteLength(value) > ctx.limits.maxStringBytes) {
      return fail(ctx, path, `is ${utf8ByteLength(value)} bytes of UTF-8, over the limit of ${ctx.limits.maxStringBytes}`);
    }
    const allowed = field.metadata.get('dice.enum');
    if (allowed !== undefined && !allowed.split(',').includes(value)) {
      return fail(ctx, path, `must be one of ${allowed.split(',').map((a) => `'${a}'`).join(', ')}, got ${describe(value)}`);
    }
    return value;
  }
  if (DataType.isBinary(type)) {
    if (!(value instanceof Uint8Array)) return fail(ctx, path, `expected bytes (Uint8Array), got ${describe(value)}`);
    if (value.byteLength > ctx.limits.maxRecordBytes) {
      return fail(ctx, path, `is ${value.byteLength} bytes, over the limit of ${ctx.limits.maxRecordBytes}`);
    }
    return value;
  }
  if (DataType.isInt(type)) {
    if (typeof value !== 'number' || !Number.isInteger(value)) return fail(ctx, path, `expected an integer, got ${describe(value)}`);
    const [lo, hi] = type.isSigned ? [INT32_MIN, INT32_MAX] : [0, 2 ** 32 - 1];
    if (value < lo || value > hi) {
      return fail(ctx, path, `${value} is out of range for ${type.isSigned ? 'int32' : 'uint32'} (${lo}..${hi})`);
    }
    return value;
  }
  if (DataType.isFloat(type)) {
    if (typeof value !== 'number') return fail(ctx, path, `expected a number, got ${describe(value)}`);
    if (!Number.isFinite(value)) return fail(ctx, path, `must be finite, got ${value}`);
    return value;
  }
  if (DataType.isBool(type)) {
    if (typeof value !== 'boolean') return fail(ctx, path, `expected true or false, got ${describe(value)}`);
    return value;
  }
  if (DataType.isList(type)) {
    const item = type.children[0];
    if (field.metadata.get('dice.kind') === 'tokens') return validateTokens(value, path, ctx);
    if (!Array.isArray(value)) return fail(ctx, path, `expected a list, got ${describe(value)}`);
    if (value.length > ctx.limits.maxListLength) {
      return fail(ctx, path, `has ${value.length} entries, over the limit of ${ctx.limits.maxListLength}`);
    }
    return value.map((v, i) => validateField(item, v, `${path}[${i}]`, ctx));
  }
  if (DataType.isStruct(type)) return validateStruct(type.children, value, path, ctx, 'reject');
  return fail(ctx, path, `unsupported column type ${type}`);
}

function validateTokens(value: unknown, path: string, ctx: Ctx): Int32Array {
  let ids: Int32Array;
  if (value instanceof Int32Array) ids = value;
  else if (Array.isArray(value)) {
    ids = new Int32Array(value.length);
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
        return fail(ctx, `${path}[${i}]`, `expected an int32 token id, got ${describe(v)}`);
      }
      ids[i] = v;
    }
  } else return fail(ctx, path, `expected token ids (Int32Array or a list of integers), got ${describe(value)}`);
  if (ids.length > ctx.limits.maxTokens) return fail(ctx, path, `has ${ids.length} tokens, over the limit of ${ctx.limits.maxTokens}`);
  return ids;
}

function validateStruct(fields: Field[], value: unknown, path: string, ctx: Ctx, extra: 'reject' | 'drop'): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    return fail(ctx, path, `expected an object, got ${describe(value)}`);
  }
  const obj = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  const prefix = path ? `${path}.` : '';
  for (const f of fields) out[f.name] = validateField(f, obj[f.name], `${prefix}${f.name}`, ctx);
  if (extra === 'reject') {
    const known = new Set(fields.map((f) => f.name));
    for (const k of Object.keys(obj)) {
      if (!known.has(k) && obj[k] !== undefined) fail(ctx, `${prefix}${k}`, `is not a field of ${path || 'the record'}`);
    }
  }
  return out;
}

/** Checks a plain object against a schema and returns the typed record (token lists become Int32Array). */
export function validateRecord(
  topic: string,
  schema: Schema,
  value: unknown,
  limits?: Partial<Limits>,
  extra: 'reject' | 'drop' = 'reject',
): Record<string, unknown> {
  const ctx: Ctx = { topic, limits: resolveLimits(limits), extra };
  return validateStruct(schema.fields, value, '', ctx, extra);
}

// ---- writing (typed records → Arrow IPC) ----

function validityOf(values: unknown[]): { nullCount: number; nullBitmap?: Uint8Array } {
  let nullCount = 0;
  for (const v of values) if (v === null || v === undefined) nullCount++;
  if (nullCount === 0) return { nullCount };
  const bitmap = new Uint8Array((values.length + 7) >> 3);
  values.forEach((v, i) => {
    if (v !== null && v !== undefined) bitmap[i >> 3] |= 1 << (i & 7);
  });
  return { nullCount, nullBitmap: bitmap };
}

function bytesColumn(values: unknown[], asText: boolean): { valueOffsets: Int32Array; data: Uint8Array } {
  const parts = values.map((v) => (v === null || v === undefined ? new Uint8Array(0) : asText ? encoder.encode(v as string) : (v as Uint8Array)));
  const valueOffsets = new Int32Array(values.length + 1);
  let total = 0;
  parts.forEach((p, i) => {
    total += p.byteLength;
    valueOffsets[i + 1] = total;
  });
  const data = new Uint8Array(total);
  parts.forEach((p, i) => data.set(p, valueOffsets[i]));
  return { valueOffsets, data };
}

function buildData(type: DataType, values: unknown[]): Data {
  const length = values.length;
  const validity = validityOf(values);
  if (DataType.isUtf8(type) || DataType.isBinary(type)) {
    return makeData({ type, length, ...validity, ...bytesColumn(values, DataType.isUtf8(type)) } as never);
  }
  if (DataType.isInt(type)) {
    const data = type.isSigned ? new Int32Array(length) : new Uint32Array(length);
    values.forEach((v, i) => (data[i] = (v as number | null) ?? 0));
    return makeData({ type, length, ...validity, data } as never);
  }
  if (DataType.isFloat(type)) {
    const data = new Float64Array(length);
    values.forEach((v, i) => (data[i] = (v as number | null) ?? 0));
    return makeData({ type, length, ...validity, data } as never);
  }
  if (DataType.isBool(type)) {
    const data = new Uint8Array((length + 7) >> 3);
    values.forEach((v, i) => {
      if (v === true) data[i >> 3] |= 1 << (i & 7);
    });
    return makeData({ type, length, ...validity, data } as never);
  }
  if (DataType.isList(type)) {
    const itemType = type.children[0].type;
    const valueOffsets = new Int32Array(length + 1);
    let total = 0;
    values.forEach((v, i) => {
      total += v ? (v as ArrayLike<unknown>).length : 0;
      valueOffsets[i + 1] = total;
    });
    let child: Data;
    if (DataType.isInt(itemType) && itemType.isSigned) {
      const flat = new Int32Array(total);
      values.forEach((v, i) => {
        if (v) flat.set(v as ArrayLike<number>, valueOffsets[i]);
      });
      child = makeData({ type: itemType, length: total, nullCount: 0, data: flat } as never);
    } else {
      const flat: unknown[] = [];
      for (const v of values) if (v) for (const x of v as unknown[]) flat.push(x);
      child = buildData(itemType, flat);
    }
    return makeData({ type, length, ...validity, valueOffsets, child } as never);
  }
  if (DataType.isStruct(type)) {
    const children = type.children.map((f) =>
      buildData(f.type, values.map((v) => (v === null || v === undefined ? null : (v as Record<string, unknown>)[f.name]))),
    );
    return makeData({ type, length, ...validity, children } as never);
  }
  throw new Error(`codec: unsupported column type ${type}`);
}

/** Encodes records (already validated) as one Arrow IPC stream with one record batch. */
export function encodeArrowRows(schema: Schema, rows: readonly object[]): Uint8Array {
  const data = buildData(new Struct(schema.fields), rows as unknown[]);
  const batch = new RecordBatch(schema, data as Data<Struct>);
  return tableToIPC(new Table(schema, [batch]), 'stream');
}

// ---- reading (Arrow IPC → typed records) ----

function isValid(data: Data, i: number): boolean {
  return data.nullCount === 0 || data.getValid(i);
}

function readValue(data: Data, field: Field, i: number, path: string, ctx: Ctx): unknown {
  if (!isValid(data, i)) return null;
  const type = data.type as DataType;
  if (DataType.isUtf8(type) || DataType.isBinary(type)) {
    const offsets = data.valueOffsets as Int32Array;
    const bytes = (data.values as Uint8Array).subarray(offsets[i], offsets[i + 1]);
    if (DataType.isBinary(type)) return bytes.slice();
    if (bytes.byteLength > ctx.limits.maxStringBytes) {
      return fail(ctx, path, `is ${bytes.byteLength} bytes of UTF-8, over the limit of ${ctx.limits.maxStringBytes}`);
    }
    try {
      return fatalDecoder.decode(bytes);
    } catch {
      return fail(ctx, path, 'is not valid UTF-8');
    }
  }
  if (DataType.isInt(type) || DataType.isFloat(type)) return (data.values as ArrayLike<number>)[i];
  if (DataType.isBool(type)) {
    const bit = data.offset + i;
    return ((data.values as Uint8Array)[bit >> 3] & (1 << (bit & 7))) !== 0;
  }
  if (DataType.isList(type)) {
    const offsets = data.valueOffsets as Int32Array;
    const [start, end] = [offsets[i], offsets[i + 1]];
    const child = data.children[0];
    const itemField = (type as List).children[0];
    if (end - start > (field.metadata.get('dice.kind') === 'tokens' ? ctx.limits.maxTokens : ctx.limits.maxListLength)) {
      return fail(ctx, path, `has ${end - start} entries, over the limit`);
    }
    if (DataType.isInt(child.type) && (child.type as Int32).isSigned && child.nullCount === 0) {
      return (child.values as Int32Array).slice(start, end);
    }
    const out: unknown[] = [];
    for (let j = start; j < end; j++) out.push(readValue(child, itemField, j, `${path}[${j - start}]`, ctx));
    return out;
  }
  if (DataType.isStruct(type)) {
    const out: Record<string, unknown> = {};
    const prefix = path ? `${path}.` : '';
    (type as Struct).children.forEach((f, c) => {
      out[f.name] = readValue(data.children[c], f, i, `${prefix}${f.name}`, ctx);
    });
    return out;
  }
  return fail(ctx, path, `unsupported column type ${type}`);
}

function sameType(expected: DataType, actual: DataType): boolean {
  if (expected.typeId !== actual.typeId) return false;
  if (DataType.isInt(expected)) return expected.bitWidth === (actual as Int32).bitWidth && expected.isSigned === (actual as Int32).isSigned;
  if (DataType.isFloat(expected)) return expected.precision === (actual as Float64).precision;
  const ec = expected.children ?? [];
  const ac = actual.children ?? [];
  if (ec.length !== ac.length) return false;
  return ec.every((f, i) => f.name === ac[i].name && sameType(f.type, ac[i].type));
}

/** Decodes an Arrow IPC stream made by encodeArrowRows against the expected schema. */
export function decodeArrowRows(topic: string, schema: Schema, bytes: Uint8Array, limits?: Partial<Limits>): Record<string, unknown>[] {
  const ctx: Ctx = { topic, limits: resolveLimits(limits), extra: 'reject' };
  if (bytes.byteLength > ctx.limits.maxRecordBytes) {
    fail(ctx, '', `record is ${bytes.byteLength} bytes, over the limit of ${ctx.limits.maxRecordBytes}`);
  }
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch (err) {
    return fail(ctx, '', `not an Arrow IPC stream (${err instanceof Error ? err.message : String(err)})`);
  }
  if (table.schema.fields.length === 0 && bytes.byteLength > 0) fail(ctx, '', 'not an Arrow IPC stream (no schema found)');
  const actual = new Map(table.schema.fields.map((f) => [f.name, f]));
  for (const f of schema.fields) {
    const a = actual.get(f.name);
    if (!a) {
      if (f.nullable) continue;
      fail(ctx, f.name, 'is missing from the record');
    } else if (!sameType(f.type, a.type)) fail(ctx, f.name, `has type ${a.type}, expected ${f.type}`);
  }
  const rows: Record<string, unknown>[] = [];
  for (const batch of table.batches) {
    for (let i = 0; i < batch.numRows; i++) {
      const row: Record<string, unknown> = {};
      for (const f of schema.fields) {
        const index = batch.schema.fields.findIndex((a) => a.name === f.name);
        row[f.name] = index < 0 ? null : readValue(batch.data.children[index], f, i, f.name, ctx);
      }
      rows.push(row);
    }
  }
  return rows;
}

// ---- JSON (small control topics) ----

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(topic: string, bytes: Uint8Array, limits?: Partial<Limits>): unknown {
  const l = resolveLimits(limits);
  if (bytes.byteLength > l.maxRecordBytes) {
    throw new TopicValidationError(topic, '', `record is ${bytes.byteLength} bytes, over the limit of ${l.maxRecordBytes}`);
  }
  let textValue: string;
  try {
    textValue = fatalDecoder.decode(bytes);
  } catch {
    throw new TopicValidationError(topic, '', 'is not valid UTF-8');
  }
  try {
    return JSON.parse(textValue);
  } catch (err) {
    throw new TopicValidationError(topic, '', `is not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
}

export { Schema, Field };
