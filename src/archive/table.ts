import {
  DataType,
  Field,
  Int32,
  Int64,
  makeData,
  RecordBatch,
  Schema,
  Struct,
  Table,
  TimestampMillisecond,
  tableFromIPC,
  tableToIPC,
  Utf8,
  Binary,
  type Data,
} from 'apache-arrow';
import type { BusRecord } from '../../topics/bus.ts';
import { encodeArrowRows } from '../../topics/codec.ts';

/** What the archive needs of a topic contract: its Arrow schema and a decoder that validates. */
export interface ArchivableContract {
  readonly name: string;
  readonly schema: Schema;
  decode(bytes: Uint8Array): unknown;
}

/** Columns every archived topic has: where the record sat on the bus and its raw bytes. */
export const RAW_COLUMNS = ['bus_partition', 'bus_offset', 'bus_timestamp', 'bus_key', 'bus_headers', 'bus_value'] as const;
/** Set when a record could not be decoded with its topic's contract (its decoded columns are then null). */
export const DECODE_ERROR_COLUMN = 'decode_error';

const rawFields = [
  new Field('bus_partition', new Int32(), false),
  new Field('bus_offset', new Int64(), false),
  new Field('bus_timestamp', new TimestampMillisecond('UTC'), false),
  new Field('bus_key', new Utf8(), true),
  /** JSON object of the record's headers. */
  new Field('bus_headers', new Utf8(), false),
  new Field('bus_value', new Binary(), false),
];

/** A decoded column: where in the decoded record it comes from. */
interface DecodedColumn {
  field: Field;
  path: string[];
}

/**
 * The contract's fields as archive columns: struct fields are flattened (`chosen_text`,
 * `chosen_logp`, …) so every reader sees plain columns; lists (e.g. a group's responses) stay
 * nested, since one row is one record. Columns are nullable: a record that fails decoding still
 * gets a row.
 */
function decodedColumns(fields: Field[], prefix: string[] = []): DecodedColumn[] {
  return fields.flatMap((f) =>
    DataType.isStruct(f.type)
      ? decodedColumns(f.type.children, [...prefix, f.name])
      : [{ field: new Field([...prefix, f.name].join('_'), f.type, true, f.metadata), path: [...prefix, f.name] }],
  );
}

/** The archive schema of a topic: the raw columns, then the decoded columns and `decode_error`. */
export function archiveSchema(contract?: ArchivableContract): Schema {
  if (!contract) return new Schema(rawFields);
  const taken = new Set<string>([...RAW_COLUMNS, DECODE_ERROR_COLUMN]);
  const decoded = decodedColumns(contract.schema.fields);
  for (const { field } of decoded) {
    if (taken.has(field.name)) throw new Error(`archive: topic ${contract.name} has a column named "${field.name}" twice or reserved by the archive`);
    taken.add(field.name);
  }
  return new Schema([...rawFields, ...decoded.map((c) => c.field), new Field(DECODE_ERROR_COLUMN, new Utf8(), true)]);
}

function at(value: unknown, path: string[]): unknown {
  let v = value;
  for (const key of path) {
    if (v === null || v === undefined) return null;
    v = (v as Record<string, unknown>)[key];
  }
  return v;
}

const encoder = new TextEncoder();

function varBytes(type: Utf8 | Binary, values: (Uint8Array | null)[]): Data {
  const offsets = new Int32Array(values.length + 1);
  let total = 0;
  values.forEach((v, i) => {
    total += v?.byteLength ?? 0;
    offsets[i + 1] = total;
  });
  const data = new Uint8Array(total);
  values.forEach((v, i) => v && data.set(v, offsets[i]));
  const nulls = values.filter((v) => v === null).length;
  let nullBitmap: Uint8Array | undefined;
  if (nulls > 0) {
    nullBitmap = new Uint8Array((values.length + 7) >> 3);
    values.forEach((v, i) => v !== null && (nullBitmap![i >> 3] |= 1 << (i & 7)));
  }
  return makeData({ type, length: values.length, nullCount: nulls, nullBitmap, valueOffsets: offsets, data } as never);
}

function rawColumns(records: BusRecord[]): Data[] {
  const n = records.length;
  return [
    makeData({ type: new Int32(), length: n, nullCount: 0, data: Int32Array.from(records, (r) => r.partition) }),
    makeData({ type: new Int64(), length: n, nullCount: 0, data: BigInt64Array.from(records, (r) => BigInt(r.offset)) }),
    makeData({ type: new TimestampMillisecond('UTC'), length: n, nullCount: 0, data: BigInt64Array.from(records, (r) => BigInt(Math.round(r.timestamp))) } as never),
    varBytes(new Utf8(), records.map((r) => (r.key === null ? null : encoder.encode(r.key)))),
    varBytes(new Utf8(), records.map((r) => encoder.encode(JSON.stringify(r.headers ?? {})))),
    varBytes(new Binary(), records.map((r) => r.value)),
  ];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

/**
 * A decoded record in the shape of its archive schema. JSON topics archive free-form parts as JSON
 * text: a field holding an object becomes its JSON, and keys the schema does not name go, as one
 * JSON object, into the schema's string column `fields` (the metrics topic's free fields).
 */
export function archiveRow(schema: Schema, decoded: Record<string, unknown>): Record<string, unknown> {
  const names = new Set(schema.fields.map((f) => f.name));
  const row: Record<string, unknown> = {};
  for (const f of schema.fields) {
    const v = decoded[f.name];
    row[f.name] = DataType.isUtf8(f.type) && isPlainObject(v) ? JSON.stringify(v) : v;
  }
  const fieldsColumn = schema.fields.find((f) => f.name === 'fields' && DataType.isUtf8(f.type));
  if (fieldsColumn && decoded.fields === undefined) {
    const extra = Object.fromEntries(Object.entries(decoded).filter(([k, v]) => !names.has(k) && v !== undefined));
    row.fields = JSON.stringify(extra);
  }
  return row;
}

/**
 * One Arrow record batch (as an IPC stream) holding `records` in archive form. Decoding failures
 * are kept, not thrown: an archive must hold everything the topic holds, good or bad.
 */
export function archiveBatch(records: BusRecord[], contract?: ArchivableContract): Uint8Array {
  const schema = archiveSchema(contract);
  const children = rawColumns(records);
  if (contract) {
    const rows: Record<string, unknown>[] = [];
    const errors: (Uint8Array | null)[] = [];
    for (const r of records) {
      try {
        rows.push(archiveRow(contract.schema, contract.decode(r.value) as Record<string, unknown>));
        errors.push(null);
      } catch (err) {
        rows.push({});
        errors.push(encoder.encode(err instanceof Error ? err.message : String(err)));
      }
    }
    // The contract's own writer builds the decoded columns (nested lists included).
    const columns = decodedColumns(contract.schema.fields);
    const decodedSchema = new Schema(columns.map((c) => c.field));
    const flatRows = rows.map((row) => Object.fromEntries(columns.map((c) => [c.field.name, at(row, c.path)])));
    const decoded = tableFromIPC(encodeArrowRows(decodedSchema, flatRows));
    const batch = decoded.batches[0];
    for (let c = 0; c < decodedSchema.fields.length; c++) {
      children.push(batch ? batch.data.children[c] : makeData({ type: decodedSchema.fields[c].type, length: 0 } as never));
    }
    children.push(varBytes(new Utf8(), errors));
  }
  const data = makeData({ type: new Struct(schema.fields), length: records.length, nullCount: 0, children });
  return tableToIPC(new Table(schema, [new RecordBatch(schema, data)]), 'stream');
}
