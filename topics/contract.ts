import type { Schema } from 'apache-arrow';
import {
  decodeArrowRows,
  decodeJson,
  encodeArrowRows,
  encodeJson,
  resolveLimits,
  TopicValidationError,
  validateRecord,
  type Limits,
} from './codec.ts';

/**
 * What a topic carries: its record type, Arrow schema (the wire format of data topics, and the
 * archive format of all of them), key, codec and validation. One module per topic exports one.
 */
export interface TopicContract<T> {
  /** Base name (the registry prefixes a run namespace). */
  readonly name: string;
  /** Wire format: one Arrow IPC stream per record, or UTF-8 JSON for small control records. */
  readonly format: 'arrow' | 'json';
  readonly schema: Schema;
  readonly defaultPartitions: number;
  keyOf(value: T): string;
  /** Plain object (e.g. a JSONL line) → typed record; throws TopicValidationError naming the field. */
  validate(value: unknown, limits?: Partial<Limits>): T;
  /** Validates, then encodes. */
  encode(value: T, limits?: Partial<Limits>): Uint8Array;
  /** Decodes and validates (strings with a fatal UTF-8 decoder); throws TopicValidationError. */
  decode(bytes: Uint8Array, limits?: Partial<Limits>): T;
}

interface ContractSpec<T> {
  name: string;
  schema: Schema;
  defaultPartitions: number;
  keyOf(value: T): string;
  /** Rules the schema cannot state (one-of fields, lengths that must agree); throw via `fail`. */
  check?(value: T, fail: (field: string, problem: string) => never, limits: Limits): void;
  /** Maps other accepted input shapes (e.g. Hugging Face column names) onto the contract's. */
  normalize?(value: Record<string, unknown>): Record<string, unknown>;
  /** Replaces the schema-driven validation (JSON topics with free-form fields). */
  validate?(value: unknown, limits?: Partial<Limits>): T;
  /** Drop top-level fields the schema does not know (datasets carry extra columns) instead of rejecting. */
  dropExtraFields?: boolean;
}

function validator<T>(spec: ContractSpec<T>) {
  if (spec.validate) return spec.validate;
  return (value: unknown, limits?: Partial<Limits>): T => {
    const input =
      spec.normalize && typeof value === 'object' && value !== null && !Array.isArray(value)
        ? spec.normalize(value as Record<string, unknown>)
        : value;
    const record = validateRecord(spec.name, spec.schema, input, limits, spec.dropExtraFields ? 'drop' : 'reject') as T;
    spec.check?.(record, (field, problem) => {
      throw new TopicValidationError(spec.name, field, problem);
    }, resolveLimits(limits));
    return record;
  };
}

function checkSize(name: string, bytes: Uint8Array, limits?: Partial<Limits>): Uint8Array {
  const max = resolveLimits(limits).maxRecordBytes;
  if (bytes.byteLength > max) throw new TopicValidationError(name, '', `encoded record is ${bytes.byteLength} bytes, over the limit of ${max}`);
  return bytes;
}

/** A data topic: Arrow IPC on the wire, one row per record. */
export function arrowContract<T>(spec: ContractSpec<T>): TopicContract<T> {
  const validate = validator(spec);
  return {
    name: spec.name,
    format: 'arrow',
    schema: spec.schema,
    defaultPartitions: spec.defaultPartitions,
    keyOf: spec.keyOf,
    validate,
    encode: (value, limits) => checkSize(spec.name, encodeArrowRows(spec.schema, [validate(value, limits) as object]), limits),
    decode: (bytes, limits) => {
      const rows = decodeArrowRows(spec.name, spec.schema, bytes, limits);
      if (rows.length !== 1) throw new TopicValidationError(spec.name, '', `expected one record per message, found ${rows.length}`);
      return validate(rows[0], limits);
    },
  };
}

/** A small control topic: UTF-8 JSON on the wire; the Arrow schema is for archiving. */
export function jsonContract<T>(spec: ContractSpec<T>): TopicContract<T> {
  const validate = validator(spec);
  return {
    name: spec.name,
    format: 'json',
    schema: spec.schema,
    defaultPartitions: spec.defaultPartitions,
    keyOf: spec.keyOf,
    validate,
    encode: (value, limits) => checkSize(spec.name, encodeJson(validate(value, limits)), limits),
    decode: (bytes, limits) => validate(decodeJson(spec.name, bytes, limits), limits),
  };
}
