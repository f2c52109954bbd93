import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import type { Bus, BusRecord } from '../../topics/bus.ts';
import { topicName, type TopicBaseName } from '../../topics/registry.ts';
import { ARCHIVE_FORMAT, fileDigest, type ArchivedTopic, type ArchiveManifest } from './archive.ts';

/**
 * A recorded run, topic by topic, as the raw records the bus held (position, key, headers, value
 * bytes): from an archive written by `dice archive` or straight from a bus. Replay and verify
 * decode them with the topics' own contracts, so they see exactly what the stages saw.
 */
export interface RunRecording {
  /** Where it was read from, for messages: the archive directory or the bus URL. */
  readonly source: string;
  /** The run's topic namespace (its batches carry it as runId). */
  readonly namespace: string | undefined;
  /** Every record of the topic, ordered by partition then offset; [] for a topic the run never had. */
  records(base: TopicBaseName): Promise<BusRecord[]>;
}

const RAW = ['bus_partition', 'bus_offset', 'bus_timestamp', 'bus_key', 'bus_headers', 'bus_value'];

/** Opens an archive directory (manifest.json + `<topic>.parquet`), checking what the manifest promises. */
export function openArchive(dir: string): RunRecording {
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) throw new Error(`${dir}: no manifest.json — not an archive written by dice archive`);
  let manifest: ArchiveManifest;
  try {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as ArchiveManifest;
  } catch (err) {
    throw new Error(`${manifestPath}: not valid JSON (${(err as Error).message})`);
  }
  if ((manifest.format as string) === 'dice-archive/1') {
    throw new Error(`${manifestPath}: a dice-archive/1 archive carries no checksums, so it cannot be trusted: archive the run again (dice archive)`);
  }
  if (manifest.format !== ARCHIVE_FORMAT) throw new Error(`${manifestPath}: format ${JSON.stringify(manifest.format)} is not ${ARCHIVE_FORMAT}`);
  if (!Array.isArray(manifest.topics)) throw new Error(`${manifestPath}: "topics" must be a list`);
  const namespace = manifest.namespace ?? undefined;
  const cache = new Map<TopicBaseName, Promise<BusRecord[]>>();
  return {
    source: dir,
    namespace,
    records(base) {
      let hit = cache.get(base);
      if (!hit) {
        const topic = topicName(namespace, base);
        const entry = manifest.topics.find((t) => t.topic === topic);
        hit = entry ? checkedTopic(join(dir, entry.file), topic, entry, manifestPath) : Promise.resolve([]);
        cache.set(base, hit);
      }
      return hit;
    },
  };
}

/** An archived topic's file after checking it is, byte for byte, the one the manifest sealed. */
async function checkedTopic(path: string, topic: string, entry: ArchivedTopic, manifestPath: string): Promise<BusRecord[]> {
  if (!existsSync(path)) throw new Error(`${path}: missing from the archive (its manifest lists ${topic})`);
  if (typeof entry.sha256 !== 'string') throw new Error(`${manifestPath}: no sha256 for ${entry.file}`);
  const actual = await fileDigest(path);
  if (actual.sha256 !== entry.sha256) {
    throw new Error(
      `${path}: sha256 ${actual.sha256} (${actual.bytes} bytes) does not match ${entry.sha256} (${entry.bytes} bytes) in ${manifestPath}: ` +
        `the file was altered or damaged after dice archive wrote it; archive the run again from its bus`,
    );
  }
  return readArchivedTopic(path, topic, entry.records);
}

/**
 * The raw columns of one archived topic file back as bus records. Only the raw bytes are read: the
 * decoded columns are for people and other tools, never trusted by replay or verify.
 */
export async function readArchivedTopic(path: string, topic: string, expectedRecords?: number): Promise<BusRecord[]> {
  if (!existsSync(path)) throw new Error(`${path}: missing from the archive (its manifest lists ${topic})`);
  const { readParquet } = await import('parquet-wasm');
  const bytes = readFileSync(path);
  let table;
  try {
    table = tableFromIPC(readParquet(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), { columns: RAW }).intoIPCStream());
  } catch (err) {
    throw new Error(`${path}: not a readable archive file (${err instanceof Error ? err.message : String(err)})`);
  }
  const column = (name: string) => {
    const c = table.getChild(name);
    if (!c) throw new Error(`${path}: no column ${name}`);
    return c;
  };
  const [partition, offset, timestamp, key, headers, value] = RAW.map(column);
  const records: BusRecord[] = [];
  for (let i = 0; i < table.numRows; i++) {
    const v = value.get(i) as Uint8Array | null;
    if (v === null) throw new Error(`${path} row ${i}: bus_value is null`);
    records.push({
      topic,
      partition: Number(partition.get(i)),
      offset: Number(offset.get(i)),
      timestamp: Number(timestamp.get(i)),
      key: (key.get(i) as string | null) ?? null,
      headers: JSON.parse((headers.get(i) as string | null) ?? '{}') as Record<string, string>,
      // a copy: the column's buffer is shared by every row
      value: Uint8Array.from(v),
    });
  }
  if (expectedRecords !== undefined && records.length !== expectedRecords) {
    throw new Error(`${path}: holds ${records.length} records, its manifest says ${expectedRecords} (a truncated or replaced file)`);
  }
  return records.sort(byPosition);
}

/** A run read straight from its bus (e.g. `dice run`'s embedded bus, or Kafka), without an archive. */
export function busRecording(bus: Bus, namespace: string | undefined): RunRecording {
  const cache = new Map<TopicBaseName, Promise<BusRecord[]>>();
  return {
    source: namespace ? `${bus.url} (namespace ${namespace})` : bus.url,
    namespace,
    records(base) {
      let hit = cache.get(base);
      if (!hit) {
        hit = readRawTopic(bus, topicName(namespace, base));
        cache.set(base, hit);
      }
      return hit;
    },
  };
}

/** Every record of a topic from its beginning to its current end, in a throwaway group (nothing committed that matters). */
async function readRawTopic(bus: Bus, topic: string): Promise<BusRecord[]> {
  if (!(await bus.listTopics()).some((t) => t.name === topic)) return [];
  const groupId = `dice-replay-read-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const records: BusRecord[] = [];
  await new Promise<void>((resolve, reject) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      queueMicrotask(() => subscription.unsubscribe());
      resolve();
    };
    const subscription = bus
      .consume({ groupId, topics: [topic], from: { kind: 'beginning' }, untilEnd: true, maxInFlight: 1_000_000, onEndReached: finish })
      .subscribe({
        next: (r) => records.push({ topic: r.topic, partition: r.partition, offset: r.offset, timestamp: r.timestamp, key: r.key, headers: r.headers, value: r.value }),
        error: reject,
        complete: finish,
      });
    if (done) subscription.unsubscribe();
  });
  return records.sort(byPosition);
}

function byPosition(a: BusRecord, b: BusRecord): number {
  return a.partition - b.partition || a.offset - b.offset;
}
