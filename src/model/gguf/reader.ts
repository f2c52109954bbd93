/**
 * GGUF v2/v3 reader over a forward-only stream: the header (metadata and tensor infos) first, then the
 * tensors one at a time in file order, so a caller holds one tensor's bytes at a time.
 */
import type { ByteStream } from './byte-stream.ts';
import { alignUp, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, type Metadata, type MetadataValue, tensorByteSize, ValueType } from './format.ts';

export interface GgufTensorInfo {
  name: string;
  /** Dimensions as GGUF stores them: fastest-varying first (the reverse of a row-major shape). */
  ne: number[];
  type: number;
  /** Offset in the data section. */
  offset: number;
  byteSize: number;
}

export interface GgufHeader {
  version: number;
  metadata: Metadata;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Absolute offset of the data section. */
  dataStart: number;
}

const MAX_STRING = 2 ** 30;
const MAX_COUNT = 2 ** 28;

class HeaderParser {
  constructor(private readonly s: ByteStream) {}

  fail(problem: string): never {
    throw new Error(`${this.s.source}: invalid GGUF: ${problem}`);
  }

  async u32(): Promise<number> {
    return (await this.s.read(4)).readUInt32LE(0);
  }

  async u64(what: string, max = Number.MAX_SAFE_INTEGER): Promise<number> {
    const v = (await this.s.read(8)).readBigUInt64LE(0);
    if (v > BigInt(max)) this.fail(`${what} ${v} is too large`);
    return Number(v);
  }

  async string(what: string): Promise<string> {
    const n = await this.u64(`${what} length`, MAX_STRING);
    return (await this.s.read(n)).toString('utf8');
  }

  async value(type: number, key: string): Promise<MetadataValue> {
    const s = this.s;
    switch (type) {
      case ValueType.UINT8: return (await s.read(1)).readUInt8(0);
      case ValueType.INT8: return (await s.read(1)).readInt8(0);
      case ValueType.UINT16: return (await s.read(2)).readUInt16LE(0);
      case ValueType.INT16: return (await s.read(2)).readInt16LE(0);
      case ValueType.UINT32: return (await s.read(4)).readUInt32LE(0);
      case ValueType.INT32: return (await s.read(4)).readInt32LE(0);
      case ValueType.FLOAT32: return (await s.read(4)).readFloatLE(0);
      case ValueType.FLOAT64: return (await s.read(8)).readDoubleLE(0);
      case ValueType.BOOL: {
        const b = (await s.read(1))[0];
        if (b > 1) this.fail(`"${key}": bool value ${b}`);
        return b === 1;
      }
      case ValueType.STRING: return this.string(`"${key}"`);
      case ValueType.UINT64: case ValueType.INT64: {
        const buf = await s.read(8);
        const v = type === ValueType.UINT64 ? buf.readBigUInt64LE(0) : buf.readBigInt64LE(0);
        return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
      }
      case ValueType.ARRAY: {
        const elemType = await this.u32();
        const n = await this.u64(`"${key}" array length`, MAX_COUNT);
        const out: MetadataValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = await this.value(elemType, key);
        return out;
      }
      default:
        return this.fail(`"${key}": unknown metadata value type ${type}`);
    }
  }
}

/** Reads the header; the stream is left at the start of the data section. */
export async function readGgufHeader(s: ByteStream): Promise<GgufHeader> {
  const p = new HeaderParser(s);
  const magic = await p.u32();
  if (magic !== GGUF_MAGIC) p.fail(`bad magic 0x${magic.toString(16)} (not a GGUF file)`);
  const version = await p.u32();
  if (version !== 2 && version !== 3) p.fail(`version ${version} is not supported (GGUF v2 and v3 are)`);
  const tensorCount = await p.u64('tensor count', MAX_COUNT);
  const kvCount = await p.u64('metadata count', MAX_COUNT);
  const metadata: Metadata = new Map();
  for (let i = 0; i < kvCount; i++) {
    const key = await p.string('key');
    const type = await p.u32();
    if (metadata.has(key)) p.fail(`duplicate metadata key "${key}"`);
    metadata.set(key, await p.value(type, key));
  }
  const alignment = metadata.get('general.alignment') ?? GGUF_DEFAULT_ALIGNMENT;
  if (typeof alignment !== 'number' || alignment <= 0 || alignment % 8 !== 0) p.fail(`"general.alignment" must be a positive multiple of 8, got ${String(alignment)}`);
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = await p.string('tensor name');
    const nDims = await p.u32();
    if (nDims < 1 || nDims > 4) p.fail(`tensor "${name}": ${nDims} dimensions`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) ne.push(await p.u64(`tensor "${name}" dimension`, 2 ** 40));
    const type = await p.u32();
    const offset = await p.u64(`tensor "${name}" offset`);
    if (offset % (alignment as number) !== 0) p.fail(`tensor "${name}": offset ${offset} is not aligned to ${alignment}`);
    tensors.push({ name, ne, type, offset, byteSize: tensorByteSize(type, ne, name) });
  }
  const dataStart = alignUp(s.offset, alignment as number);
  await s.skip(dataStart - s.offset);
  return { version, metadata, tensors, alignment: alignment as number, dataStart };
}

/**
 * The tensors' bytes in file order, each in its own buffer, one at a time (gaps are skipped;
 * overlapping tensors are refused).
 */
export async function* readGgufTensors(s: ByteStream, header: GgufHeader): AsyncGenerator<{ info: GgufTensorInfo; bytes: Uint8Array }> {
  const ordered = [...header.tensors].sort((a, b) => a.offset - b.offset);
  for (const info of ordered) {
    const at = header.dataStart + info.offset;
    if (at < s.offset) throw new Error(`${s.source}: invalid GGUF: tensor "${info.name}" overlaps the tensor before it`);
    await s.skip(at - s.offset);
    yield { info, bytes: await s.readOwned(info.byteSize) };
  }
}

/** Typed metadata access with errors that name the key. */
export class MetadataReader {
  constructor(
    readonly metadata: Metadata,
    readonly source: string,
  ) {}

  fail(key: string, problem: string): never {
    throw new Error(`${this.source}: GGUF key "${key}" ${problem}`);
  }

  has(key: string): boolean {
    return this.metadata.has(key);
  }

  string(key: string): string;
  string(key: string, fallback: string | null): string | null;
  string(key: string, fallback?: string | null): string | null {
    const v = this.metadata.get(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is missing (required)');
      return fallback;
    }
    if (typeof v !== 'string') this.fail(key, `must be a string, got ${typeof v}`);
    return v as string;
  }

  int(key: string, fallback?: number): number;
  int(key: string, fallback: number | null): number | null;
  int(key: string, fallback?: number | null): number | null {
    const v = this.metadata.get(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is missing (required)');
      return fallback;
    }
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) this.fail(key, `must be a non-negative integer, got ${String(v)}`);
    return v as number;
  }

  number(key: string, fallback?: number): number {
    const v = this.metadata.get(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is missing (required)');
      return fallback!;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(key, `must be a number, got ${String(v)}`);
    return v as number;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.metadata.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${String(v)}`);
    return v as boolean;
  }

  strings(key: string, required = true): string[] | null {
    const v = this.metadata.get(key);
    if (v === undefined) {
      if (required) this.fail(key, 'is missing (required)');
      return null;
    }
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(key, 'must be an array of strings');
    return v as string[];
  }

  ints(key: string): number[] | null {
    const v = this.metadata.get(key);
    if (v === undefined) return null;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) this.fail(key, 'must be an array of integers');
    return v as number[];
  }
}
