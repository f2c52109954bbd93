import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Bus, BusRecord, ConsumedRecord } from '../../topics/bus.ts';
import { parseTopicName, topicContracts } from '../../topics/registry.ts';
import { writeParquetFile } from './parquet-file.ts';
import { type ArchivableContract, archiveBatch } from './table.ts';

export interface ArchiveOptions {
  bus: Bus;
  /** Directory for `<topic>.parquet` files and `manifest.json` (created if missing). */
  outDir: string;
  /** The run's namespace; without one, the topics with no namespace. */
  namespace?: string;
  /** Records per Parquet row group (default 4096); also bounds what is held in memory. */
  batchRecords?: number;
  /** A row group is cut early once its raw values reach this many bytes (default 32 MiB). */
  batchBytes?: number;
  /** Called after each row group is handed to the writer. */
  onProgress?: (progress: { topic: string; records: number }) => void;
}

export interface ArchivedTopic {
  /** Full topic name on the bus. */
  topic: string;
  /** File name within the archive directory. */
  file: string;
  /** The contract that decoded it (null: raw columns only). */
  contract: string | null;
  records: number;
  /** Records that failed their contract's decoding (kept, with `decode_error`). */
  decodeErrors: number;
  partitions: number;
  /** End offsets listed before reading: the archive holds every record below them (and any written meanwhile). */
  endOffsets: number[];
  /** sha256 of the file: readers check it, so a changed byte anywhere (raw or decoded columns) is reported, not trusted. */
  sha256: string;
  bytes: number;
}

/** v2: every file's sha256 is in the manifest (v1 archives had none, so their integrity cannot be checked). */
export const ARCHIVE_FORMAT = 'dice-archive/2';

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  bus: string;
  namespace: string | null;
  createdAt: string;
  topics: ArchivedTopic[];
}

/** The topics of a run: its namespace's topics, or those without a namespace (never a broker's internal `_…` topics). */
export function runTopics(names: string[], namespace?: string): string[] {
  return names
    .filter((n) => !n.startsWith('_'))
    .filter((n) => (namespace ? n.startsWith(`${namespace}.`) && n.length > namespace.length + 1 : !n.includes('.')))
    .sort();
}

function contractOf(topic: string): ArchivableContract | undefined {
  const parsed = parseTopicName(topic);
  return parsed ? (topicContracts[parsed.base] as ArchivableContract) : undefined;
}

/**
 * Reads `topic` from its beginning to its end as of now (its own throwaway consumer group) and
 * yields archive batches. The bus completes an `untilEnd` read only once every delivered record is
 * committed, so records are committed on arrival while the buffer has room; past that they stay
 * uncommitted until the writer takes them, which pauses the consumer (its in-flight bound) and
 * keeps memory to about two batches.
 */
async function* topicBatches(
  bus: Bus,
  topic: string,
  contract: ArchivableContract | undefined,
  limits: { records: number; bytes: number },
  stats: { records: number; decodeErrors: number },
  onBatch: (records: number) => void,
): AsyncGenerator<Uint8Array> {
  const pending: ConsumedRecord[] = [];
  /** Pending records held uncommitted (to pause the consumer) until the writer takes them. */
  const held = new Set<ConsumedRecord>();
  let pendingBytes = 0;
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const signal = () => {
    wake?.();
    wake = undefined;
  };
  const fail = (err: unknown) => {
    failure ??= err;
    done = true;
    signal();
  };
  const sub = bus
    .consume({ groupId: `dice-archive-${randomBytes(6).toString('hex')}`, topics: [topic], from: { kind: 'beginning' }, untilEnd: true, maxInFlight: limits.records })
    .subscribe({
      next: (r) => {
        pending.push(r);
        pendingBytes += r.value.byteLength;
        if (pending.length > limits.records || pendingBytes > limits.bytes) held.add(r);
        else r.commit().catch(fail);
        if (pending.length >= limits.records || pendingBytes >= limits.bytes) signal();
      },
      error: (err) => fail(err),
      complete: () => {
        done = true;
        signal();
      },
    });
  try {
    let yielded = false;
    for (;;) {
      if (!done && pending.length < limits.records && pendingBytes < limits.bytes) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      if (failure) throw failure;
      if (pending.length === 0 && done) break;
      const chunk = pending.splice(0, Math.min(pending.length, limits.records));
      pendingBytes = pending.reduce((s, r) => s + r.value.byteLength, 0);
      const { ipc, decodeErrors } = archiveChunk(chunk, contract);
      stats.records += chunk.length;
      stats.decodeErrors += decodeErrors;
      yield ipc;
      yielded = true;
      await Promise.all(chunk.filter((r) => held.delete(r)).map((r) => r.commit()));
      onBatch(stats.records);
    }
    // An empty topic still gets a file with its schema.
    if (!yielded) yield archiveChunk([], contract).ipc;
  } finally {
    sub.unsubscribe();
  }
}

function archiveChunk(records: BusRecord[], contract: ArchivableContract | undefined): { ipc: Uint8Array; decodeErrors: number } {
  let decodeErrors = 0;
  const counting = contract && {
    name: contract.name,
    schema: contract.schema,
    decode: (bytes: Uint8Array) => {
      try {
        return contract.decode(bytes);
      } catch (err) {
        decodeErrors++;
        throw err;
      }
    },
  };
  return { ipc: archiveBatch(records, counting), decodeErrors };
}

/** Writes every topic of a run to `<outDir>/<topic>.parquet`, plus `manifest.json` describing them. */
export async function archiveRun(options: ArchiveOptions): Promise<ArchiveManifest> {
  const { bus, outDir, namespace } = options;
  const limits = { records: options.batchRecords ?? 4096, bytes: options.batchBytes ?? 32 * 1024 * 1024 };
  if (!Number.isInteger(limits.records) || limits.records < 1) throw new Error(`archive: batchRecords must be a positive integer, got ${limits.records}`);
  await mkdir(outDir, { recursive: true });
  const infos = await bus.listTopics();
  const names = runTopics(infos.map((t) => t.name), namespace);
  if (names.length === 0) {
    throw new Error(`archive: no topics ${namespace ? `in namespace "${namespace}"` : 'without a namespace'} on ${bus.url} (topics there: ${infos.map((t) => t.name).join(', ') || 'none'})`);
  }
  const topics: ArchivedTopic[] = [];
  for (const topic of names) {
    const info = infos.find((t) => t.name === topic)!;
    const contract = contractOf(topic);
    const file = `${namespace ? topic.slice(namespace.length + 1) : topic}.parquet`;
    const stats = { records: 0, decodeErrors: 0 };
    const batches = topicBatches(bus, topic, contract, limits, stats, (records) => options.onProgress?.({ topic, records }));
    await writeParquetFile(join(outDir, file), batches, { createdBy: 'dice-stream archive (parquet-wasm)', maxRowGroupRows: limits.records });
    const sealed = await fileDigest(join(outDir, file));
    topics.push({ topic, file, contract: contract?.name ?? null, records: stats.records, decodeErrors: stats.decodeErrors, partitions: info.partitions, endOffsets: info.endOffsets, ...sealed });
  }
  const manifest: ArchiveManifest = { format: ARCHIVE_FORMAT, bus: bus.url, namespace: namespace ?? null, createdAt: new Date().toISOString(), topics };
  await writeFile(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** sha256 and size of a file, streamed (archive files can be larger than memory). */
export async function fileDigest(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}
