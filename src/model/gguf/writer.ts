/**
 * A GGUF v3 writer: metadata and tensor infos first, then each tensor's bytes, aligned, produced one
 * tensor at a time by the caller (so only one converted tensor need be in memory).
 */
import { closeSync, openSync } from 'node:fs';
import { writeAllAt } from '../safetensors.ts';
import { alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, ValueType } from './format.ts';

/** A metadata value with its GGUF type (numbers need one: u32 and f32 read alike in JS). */
export type TypedValue =
  | { type: ValueType.UINT32 | ValueType.INT32 | ValueType.FLOAT32 | ValueType.UINT64 | ValueType.FLOAT64; value: number }
  | { type: ValueType.BOOL; value: boolean }
  | { type: ValueType.STRING; value: string }
  | { type: ValueType.ARRAY; elementType: ValueType.STRING; value: string[] }
  | { type: ValueType.ARRAY; elementType: ValueType.INT32 | ValueType.FLOAT32; value: number[] };

export const u32 = (value: number): TypedValue => ({ type: ValueType.UINT32, value });
export const f32 = (value: number): TypedValue => ({ type: ValueType.FLOAT32, value });
export const str = (value: string): TypedValue => ({ type: ValueType.STRING, value });
export const bool = (value: boolean): TypedValue => ({ type: ValueType.BOOL, value });
export const strings = (value: string[]): TypedValue => ({ type: ValueType.ARRAY, elementType: ValueType.STRING, value });
export const i32s = (value: number[]): TypedValue => ({ type: ValueType.ARRAY, elementType: ValueType.INT32, value });

export interface TensorEntry {
  name: string;
  /** Row-major shape; written reversed (GGUF lists the fastest dimension first). */
  shape: number[];
  type: number;
  byteSize: number;
}

class Bytes {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  scalar(type: ValueType, v: number | boolean | string): void {
    const b = Buffer.alloc(8);
    switch (type) {
      case ValueType.UINT32: b.writeUInt32LE(v as number); return this.push(b.subarray(0, 4));
      case ValueType.INT32: b.writeInt32LE(v as number); return this.push(b.subarray(0, 4));
      case ValueType.FLOAT32: b.writeFloatLE(v as number); return this.push(b.subarray(0, 4));
      case ValueType.UINT64: return this.u64(v as number);
      case ValueType.FLOAT64: b.writeDoubleLE(v as number); return this.push(b);
      case ValueType.BOOL: return this.push(Buffer.from([v ? 1 : 0]));
      case ValueType.STRING: return this.string(v as string);
      default: throw new Error(`GGUF writer: no scalar type ${type}`);
    }
  }
  concat(): Buffer {
    return Buffer.concat(this.parts, this.length);
  }
}

export class GgufWriter {
  private readonly fd: number;
  private readonly offsets = new Map<string, number>();
  private readonly pending: Map<string, TensorEntry>;
  private readonly dataStart: number;

  constructor(
    readonly path: string,
    metadata: ReadonlyMap<string, TypedValue>,
    tensors: readonly TensorEntry[],
    readonly alignment = GGUF_DEFAULT_ALIGNMENT,
  ) {
    const h = new Bytes();
    h.u32(GGUF_MAGIC);
    h.u32(3);
    h.u64(tensors.length);
    h.u64(metadata.size);
    for (const [key, v] of metadata) {
      h.string(key);
      h.u32(v.type);
      if (v.type === ValueType.ARRAY) {
        h.u32(v.elementType);
        h.u64(v.value.length);
        for (const x of v.value) h.scalar(v.elementType, x);
      } else h.scalar(v.type, v.value);
    }
    let offset = 0;
    for (const t of tensors) {
      h.string(t.name);
      h.u32(t.shape.length);
      for (const d of [...t.shape].reverse()) h.u64(d);
      h.u32(t.type);
      h.u64(offset);
      this.offsets.set(t.name, offset);
      offset = alignUp(offset + t.byteSize, alignment);
    }
    this.dataStart = alignUp(h.length, alignment);
    h.push(Buffer.alloc(this.dataStart - h.length));
    this.pending = new Map(tensors.map((t) => [t.name, t]));
    this.fd = openSync(path, 'w');
    writeAllAt(this.fd, h.concat(), 0);
  }

  write(name: string, bytes: Uint8Array): void {
    const t = this.pending.get(name);
    if (!t) throw new Error(`${this.path}: tensor "${name}" is not declared or was written already`);
    if (bytes.byteLength !== t.byteSize) throw new Error(`${this.path}: tensor "${name}" has ${bytes.byteLength} bytes, declared ${t.byteSize}`);
    writeAllAt(this.fd, bytes, this.dataStart + this.offsets.get(name)!);
    this.pending.delete(name);
  }

  close(): void {
    closeSync(this.fd);
    if (this.pending.size > 0) throw new Error(`${this.path}: tensors never written: ${[...this.pending.keys()].join(', ')}`);
  }
}
