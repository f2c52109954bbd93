/**
 * safetensors read/write (https://github.com/huggingface/safetensors, format: u64-LE header length N,
 * N bytes of JSON header padded with spaces to a multiple of 8, then the raw little-endian tensor bytes).
 *
 * The writer lays files out exactly as the Python/Rust `safetensors` library does (tensors ordered by
 * dtype, widest first, then by name; offsets in that order; header padded to 8 bytes), so reading a file
 * written by either and writing it back gives the same bytes. Reading keeps each tensor's dtype and makes
 * zero-copy views into the one file buffer wherever the element alignment allows.
 */
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { DType, HostTensor, TypedArray, Weights } from './tensor.ts';
import { numel } from './tensor.ts';

interface DTypeInfo {
  /** Name in the safetensors header. */
  tag: string;
  bytes: number;
  /** Rank in the Rust library's `Dtype` enum; the writer orders tensors by it, widest (highest) first. */
  rank: number;
  view: (buf: ArrayBuffer, byteOffset: number, length: number) => TypedArray;
}

const DTYPES: Record<DType, DTypeInfo> = {
  bool: { tag: 'BOOL', bytes: 1, rank: 0, view: (b, o, n) => new Uint8Array(b, o, n) },
  uint8: { tag: 'U8', bytes: 1, rank: 1, view: (b, o, n) => new Uint8Array(b, o, n) },
  int8: { tag: 'I8', bytes: 1, rank: 2, view: (b, o, n) => new Int8Array(b, o, n) },
  float16: { tag: 'F16', bytes: 2, rank: 3, view: (b, o, n) => new Uint16Array(b, o, n) },
  bfloat16: { tag: 'BF16', bytes: 2, rank: 4, view: (b, o, n) => new Uint16Array(b, o, n) },
  int32: { tag: 'I32', bytes: 4, rank: 5, view: (b, o, n) => new Int32Array(b, o, n) },
  float32: { tag: 'F32', bytes: 4, rank: 6, view: (b, o, n) => new Float32Array(b, o, n) },
  float64: { tag: 'F64', bytes: 8, rank: 7, view: (b, o, n) => new Float64Array(b, o, n) },
  int64: { tag: 'I64', bytes: 8, rank: 8, view: (b, o, n) => new BigInt64Array(b, o, n) },
};

const DTYPE_BY_TAG = new Map<string, DType>(Object.entries(DTYPES).map(([d, info]) => [info.tag, d as DType]));

/** The header may be at most 100 MB (the reference implementation's limit). */
const MAX_HEADER_BYTES = 100_000_000;

if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('safetensors.ts assumes a little-endian host');
}

export interface SafetensorsFile {
  weights: Weights;
  /** The optional `__metadata__` string map, in file order (JS puts integer-like keys first). */
  metadata: Map<string, string> | null;
}

export type SafetensorsMetadata = Map<string, string> | Record<string, string> | null | undefined;

export function dtypeByteSize(dtype: DType): number {
  return DTYPES[dtype].bytes;
}

/** Parses safetensors bytes. `source` names the file in errors. Tensor data are views into `bytes` where aligned. */
export function parseSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsFile {
  const fail = (problem: string): never => {
    throw new Error(`${source}: invalid safetensors file: ${problem}`);
  };
  if (bytes.byteLength < 8) fail(`truncated: ${bytes.byteLength} bytes, need at least 8 for the header length`);
  const headerLen = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(headerLen);
  if (8 + n > bytes.byteLength) {
    fail(`truncated: header length ${n} but only ${bytes.byteLength - 8} bytes follow the length field`);
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (err) {
    fail(`header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const entries = Object.entries(header as Record<string, unknown>);

  let metadata: Map<string, string> | null = null;
  const dataStart = 8 + n;
  const dataLen = bytes.byteLength - dataStart;
  const spans: Array<{ name: string; dtype: DType; shape: number[]; begin: number; end: number }> = [];
  for (const [name, raw] of entries) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('__metadata__ is not an object');
      metadata = new Map();
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__["${k}"] is not a string`);
        metadata.set(k, v as string);
      }
      continue;
    }
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) fail(`tensor "${name}": entry is not an object`);
    const dtype = DTYPE_BY_TAG.get(String(info.dtype));
    if (dtype === undefined) {
      fail(`tensor "${name}": unknown or unsupported dtype ${JSON.stringify(info.dtype)} (supported: ${[...DTYPE_BY_TAG.keys()].join(', ')})`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offs = info.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      fail(`tensor "${name}": data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offs as [number, number];
    const expected = numel(shape as number[]) * DTYPES[dtype!].bytes;
    if (end < begin || end - begin !== expected) {
      fail(`tensor "${name}": data_offsets [${begin}, ${end}] span ${end - begin} bytes but ${dtype}${JSON.stringify(shape)} needs ${expected}`);
    }
    if (end > dataLen) {
      fail(`tensor "${name}": data_offsets [${begin}, ${end}] out of range: the data section has ${dataLen} bytes (file truncated?)`);
    }
    spans.push({ name, dtype: dtype!, shape: shape as number[], begin, end });
  }
  // As the reference reader: the tensors tile the data section exactly, with no gaps or overlaps.
  const byOffset = [...spans].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const s of byOffset) {
    if (s.begin !== cursor) {
      fail(`tensor "${s.name}": data_offsets start at ${s.begin}, expected ${cursor} (tensors must be contiguous, without gaps or overlaps)`);
    }
    cursor = s.end;
  }
  if (cursor !== dataLen) fail(`data section has ${dataLen} bytes but the tensors cover ${cursor}`);

  const weights: Weights = new Map();
  for (const s of spans) {
    const info = DTYPES[s.dtype];
    const absolute = bytes.byteOffset + dataStart + s.begin;
    const count = (s.end - s.begin) / info.bytes;
    const data =
      absolute % info.bytes === 0
        ? info.view(bytes.buffer as ArrayBuffer, absolute, count)
        : info.view(new Uint8Array(bytes.subarray(dataStart + s.begin, dataStart + s.end)).buffer, 0, count) // copy: unaligned;
    weights.set(s.name, { dtype: s.dtype, shape: s.shape, data });
  }
  return { weights, metadata };
}

/** Reads a whole file into one buffer in chunks (readFileSync stops at 2 GiB; a 0.5B f32 model is close). */
function readWholeFile(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const bytes = Buffer.allocUnsafeSlow(size);
    const CHUNK = 1 << 30;
    let done = 0;
    while (done < size) {
      const n = readSync(fd, bytes, done, Math.min(CHUNK, size - done), done);
      if (n === 0) throw new Error(`file shrank while reading (${done} of ${size} bytes)`);
      done += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** Reads one .safetensors file (one read into memory; tensors are views of it). */
export function readSafetensors(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readWholeFile(path);
  } catch (err) {
    throw new Error(`${path}: cannot read safetensors file (${(err as Error).message})`);
  }
  return parseSafetensors(bytes, path);
}

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';

/**
 * Reads a model directory's weights: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json` (every tensor must sit in the shard the index names, once).
 */
export function readSafetensorsDir(dir: string): SafetensorsFile {
  const single = join(dir, SINGLE_FILE_NAME);
  if (existsSync(single)) return readSafetensors(single);
  const indexPath = join(dir, INDEX_FILE_NAME);
  if (!existsSync(indexPath)) {
    throw new Error(`${dir}: no ${SINGLE_FILE_NAME} and no ${INDEX_FILE_NAME}; not a Hugging Face model directory?`);
  }
  let index: { weight_map?: unknown; metadata?: unknown };
  try {
    index = JSON.parse(readFileSync(indexPath, 'utf8'));
  } catch (err) {
    throw new Error(`${indexPath}: cannot read the shard index (${(err as Error).message})`);
  }
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new Error(`${indexPath}: "weight_map" is missing or not an object`);
  }
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) {
      throw new Error(`${indexPath}: weight_map["${name}"] is not a shard file name: ${JSON.stringify(shard)}`);
    }
    byShard.set(shard, [...(byShard.get(shard) ?? []), name]);
  }
  const weights: Weights = new Map();
  for (const [shard, names] of [...byShard].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const shardPath = join(dir, shard);
    const file = readSafetensors(shardPath);
    for (const name of file.weights.keys()) {
      if (!(map as Record<string, string>)[name]) throw new Error(`${shardPath}: tensor "${name}" is not listed in ${INDEX_FILE_NAME}`);
    }
    for (const name of names) {
      const t = file.weights.get(name);
      if (!t) throw new Error(`${shardPath}: tensor "${name}" listed in ${INDEX_FILE_NAME} is not in this shard`);
      weights.set(name, t);
    }
  }
  return { weights, metadata: null };
}

function compareUtf8(a: string, b: string): number {
  // Rust orders Strings by UTF-8 bytes; JS `<` compares UTF-16 units, which differs beyond the BMP.
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function tensorBytes(name: string, t: HostTensor): Uint8Array {
  const info = DTYPES[t.dtype];
  if (!info) throw new Error(`tensor "${name}": unsupported dtype ${String(t.dtype)}`);
  if (t.data.BYTES_PER_ELEMENT !== info.bytes) {
    throw new Error(`tensor "${name}": ${t.dtype} data held in a ${t.data.constructor.name}`);
  }
  if (t.data.length !== numel(t.shape)) {
    throw new Error(`tensor "${name}": shape ${JSON.stringify(t.shape)} needs ${numel(t.shape)} elements, data has ${t.data.length}`);
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

export interface TensorSpec {
  dtype: DType;
  shape: number[];
}

/**
 * The header of a safetensors file holding tensors of these specs, and where each tensor's bytes go
 * (relative to the end of the header), in the reference writer's order: by dtype, widest first, then name.
 */
export function safetensorsLayout(specs: ReadonlyMap<string, TensorSpec>, metadata?: SafetensorsMetadata): { head: Buffer; order: string[]; begin: Map<string, number> } {
  const order = [...specs.keys()].sort((a, b) => {
    const ra = DTYPES[specs.get(a)!.dtype]?.rank ?? -1;
    const rb = DTYPES[specs.get(b)!.dtype]?.rank ?? -1;
    return rb - ra || compareUtf8(a, b);
  });
  const parts: string[] = [];
  const meta = metadata instanceof Map ? [...metadata] : metadata ? Object.entries(metadata) : null;
  if (meta) {
    parts.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
  }
  const begin = new Map<string, number>();
  let offset = 0;
  for (const name of order) {
    if (name === '__metadata__') throw new Error('a tensor may not be named "__metadata__"');
    const t = specs.get(name)!;
    const info = DTYPES[t.dtype];
    if (!info) throw new Error(`tensor "${name}": unsupported dtype ${String(t.dtype)}`);
    const bytes = numel(t.shape) * info.bytes;
    parts.push(`${JSON.stringify(name)}:{"dtype":"${info.tag}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`);
    begin.set(name, offset);
    offset += bytes;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const head = Buffer.alloc(8 + padded, 0x20);
  head.writeBigUInt64LE(BigInt(padded), 0);
  json.copy(head, 8);
  return { head, order, begin };
}

/**
 * Serializes to the safetensors layout as chunks: [length+header, tensor bytes...] (no copy of tensor data).
 * Tensor order, offsets, JSON form and padding follow the reference writer byte for byte.
 */
export function serializeSafetensors(weights: Weights, metadata?: SafetensorsMetadata): Uint8Array[] {
  const { head, order } = safetensorsLayout(weights, metadata);
  return [head, ...order.map((name) => tensorBytes(name, weights.get(name)!))];
}

/**
 * Writes a safetensors file whose tensors arrive one at a time in any order (positioned writes into
 * the layout the reference writer would give): only one tensor need be in memory.
 */
export class SafetensorsStreamWriter {
  private readonly fd: number;
  private readonly layout: ReturnType<typeof safetensorsLayout>;
  private readonly pending: Map<string, TensorSpec>;

  constructor(
    readonly path: string,
    specs: ReadonlyMap<string, TensorSpec>,
    metadata?: SafetensorsMetadata,
  ) {
    this.layout = safetensorsLayout(specs, metadata);
    this.pending = new Map(specs);
    this.fd = openSync(path, 'w');
    writeAllAt(this.fd, this.layout.head, 0);
  }

  write(name: string, t: HostTensor): void {
    const spec = this.pending.get(name);
    if (!spec) throw new Error(`${this.path}: tensor "${name}" is not in the layout or was written already`);
    if (spec.dtype !== t.dtype || spec.shape.join(',') !== t.shape.join(',')) {
      throw new Error(`${this.path}: tensor "${name}" is ${t.dtype}[${t.shape}], the layout has ${spec.dtype}[${spec.shape}]`);
    }
    writeAllAt(this.fd, tensorBytes(name, t), this.layout.head.byteLength + this.layout.begin.get(name)!);
    this.pending.delete(name);
  }

  /** Closes the file; throws naming the tensors never written. */
  close(): void {
    closeSync(this.fd);
    if (this.pending.size > 0) throw new Error(`${this.path}: tensors never written: ${[...this.pending.keys()].join(', ')}`);
  }
}

/** Writes all of `chunk` at `position` (writeSync may write less than asked). */
export function writeAllAt(fd: number, chunk: Uint8Array, position: number): void {
  let done = 0;
  while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done, position + done);
}

/** The whole file as one buffer (small models, hashing, tests). */
export function encodeSafetensors(weights: Weights, metadata?: SafetensorsMetadata): Uint8Array {
  return Buffer.concat(serializeSafetensors(weights, metadata));
}

/** Writes a .safetensors file chunk by chunk (no whole-file copy in memory). */
export function writeSafetensors(path: string, weights: Weights, metadata?: SafetensorsMetadata): void {
  const chunks = serializeSafetensors(weights, metadata);
  const fd = openSync(path, 'w');
  try {
    for (const chunk of chunks) {
      let done = 0;
      while (done < chunk.byteLength) done += writeSync(fd, chunk, done, chunk.byteLength - done);
    }
  } finally {
    closeSync(fd);
  }
}

// ---- float conversions ------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float32 bits → float16 bits, round to nearest even (as torch's `.half()`). */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const frac = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (frac ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = frac | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (frac >>> 13);
  const rem = frac & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++; // may carry into the exponent: correct
  return sign | half;
}

/** float32 data of a float tensor: the data itself for float32, a converted copy for f16/bf16/f64. */
export function toFloat32(t: HostTensor): Float32Array {
  const n = t.data.length;
  switch (t.dtype) {
    case 'float32':
      return t.data as Float32Array;
    case 'bfloat16': {
      const src = t.data as Uint16Array;
      const out = new Uint32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'float16': {
      const src = t.data as Uint16Array;
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(src[i]);
      return out;
    }
    case 'float64':
      return Float32Array.from(t.data as Float64Array);
    default:
      throw new Error(`toFloat32: tensor of dtype ${t.dtype} is not a float tensor`);
  }
}

/** A tensor of `dtype` from float32 values (round to nearest even for f16/bf16). */
export function fromFloat32(data: Float32Array, shape: number[], dtype: 'float32' | 'float16' | 'bfloat16' = 'float32'): HostTensor {
  if (data.length !== numel(shape)) throw new Error(`fromFloat32: ${data.length} values for shape ${JSON.stringify(shape)}`);
  if (dtype === 'float32') return { dtype, shape, data };
  const out = new Uint16Array(data.length);
  if (dtype === 'float16') {
    for (let i = 0; i < data.length; i++) out[i] = floatToHalf(data[i]);
  } else {
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < data.length; i++) {
      const b = bits[i];
      const isNaN = (b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0;
      out[i] = isNaN ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  }
  return { dtype, shape, data: out };
}
