/**
 * A GGUF as a forward-only byte stream: a plain file, or a `.gguf` member of a zip (a Python wheel),
 * inflated on the fly — nothing is extracted to disk and only the bytes asked for are held.
 */
import { closeSync, createReadStream, fstatSync, openSync, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { createInflateRaw } from 'node:zlib';

/** Sequential reads over a Readable; `read(n)` resolves with exactly n bytes or fails naming the source. */
export class ByteStream {
  private readonly chunks: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Bytes consumed so far (the offset of the next byte in the stream). */
  offset = 0;

  constructor(
    stream: Readable,
    readonly source: string,
  ) {
    this.chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  }

  private async fill(n: number): Promise<void> {
    const have = this.buf.length - this.pos;
    if (have >= n) return;
    const parts = [this.buf.subarray(this.pos)];
    let total = have;
    while (total < n) {
      const next = await this.chunks.next();
      if (next.done) throw new Error(`${this.source}: truncated: needed ${n - total} more bytes at offset ${this.offset + total}`);
      parts.push(next.value);
      total += next.value.length;
    }
    this.buf = Buffer.concat(parts, total);
    this.pos = 0;
  }

  /** The next n bytes (a view valid until the next call; copy to keep). */
  async read(n: number): Promise<Buffer> {
    await this.fill(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /** The next n bytes in a buffer of their own. */
  async readOwned(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let done = 0;
    const have = Math.min(n, this.buf.length - this.pos);
    out.set(this.buf.subarray(this.pos, this.pos + have));
    this.pos += have;
    done += have;
    while (done < n) {
      const next = await this.chunks.next();
      if (next.done) throw new Error(`${this.source}: truncated: needed ${n - done} more bytes at offset ${this.offset + done}`);
      const take = Math.min(n - done, next.value.length);
      out.set(next.value.subarray(0, take), done);
      done += take;
      this.buf = next.value;
      this.pos = take;
    }
    this.offset += n;
    return out;
  }

  async skip(n: number): Promise<void> {
    while (n > 0) {
      const step = Math.min(n, 1 << 20);
      await this.read(step);
      n -= step;
    }
  }

  async close(): Promise<void> {
    await this.chunks.return?.();
  }
}

interface ZipMember {
  name: string;
  method: number;
  compressedSize: number;
  dataOffset: number;
}

/** The members of a zip file, from its central directory (no zip64: wheels of small models do not need it). */
function zipMembers(path: string): ZipMember[] {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = Buffer.alloc(tailLen);
    readSync(fd, tail, 0, tailLen, size - tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) if (tail.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
    if (eocd < 0) throw new Error(`${path}: not a zip file (no end-of-central-directory record)`);
    const count = tail.readUInt16LE(eocd + 10);
    const cdSize = tail.readUInt32LE(eocd + 12);
    const cdOffset = tail.readUInt32LE(eocd + 16);
    if (cdOffset === 0xffffffff || count === 0xffff) throw new Error(`${path}: zip64 archives are not supported`);
    const cd = Buffer.alloc(cdSize);
    readSync(fd, cd, 0, cdSize, cdOffset);
    const members: ZipMember[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (cd.readUInt32LE(p) !== 0x02014b50) throw new Error(`${path}: corrupt zip central directory at entry ${i}`);
      const method = cd.readUInt16LE(p + 10);
      const compressedSize = cd.readUInt32LE(p + 20);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const localOffset = cd.readUInt32LE(p + 42);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      const local = Buffer.alloc(30);
      readSync(fd, local, 0, 30, localOffset);
      if (local.readUInt32LE(0) !== 0x04034b50) throw new Error(`${path}: corrupt zip local header for ${name}`);
      const dataOffset = localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      members.push({ name, method, compressedSize, dataOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return members;
  } finally {
    closeSync(fd);
  }
}

function isZip(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(4);
    return readSync(fd, head, 0, 4, 0) === 4 && head.readUInt32LE(0) === 0x04034b50;
  } finally {
    closeSync(fd);
  }
}

/** Opens a `.gguf` file, or the one `.gguf` member of a zip/wheel, as a ByteStream. */
export function openGgufStream(path: string): ByteStream {
  if (!isZip(path)) return new ByteStream(createReadStream(path, { highWaterMark: 1 << 20 }), path);
  const ggufs = zipMembers(path).filter((m) => m.name.endsWith('.gguf'));
  if (ggufs.length !== 1) {
    throw new Error(`${path}: a zip must hold exactly one .gguf member, found ${ggufs.length}${ggufs.length ? ` (${ggufs.map((m) => m.name).join(', ')})` : ''}`);
  }
  const m = ggufs[0];
  const source = `${path}!${m.name}`;
  if (m.compressedSize === 0) throw new Error(`${source}: empty member (or sizes only in a data descriptor, not supported)`);
  const raw = createReadStream(path, { start: m.dataOffset, end: m.dataOffset + m.compressedSize - 1, highWaterMark: 1 << 20 });
  if (m.method === 0) return new ByteStream(raw, source);
  if (m.method !== 8) throw new Error(`${source}: zip compression method ${m.method} is not supported (stored or deflate only)`);
  return new ByteStream(raw.pipe(createInflateRaw({ chunkSize: 1 << 20 })), source);
}
