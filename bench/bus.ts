/**
 * npm run bench:bus [-- --records N --chunk C --rounds R --slow-seconds S]
 *
 * Produce→consume throughput of samples-sized records (one samples group: 16 responses × 512
 * tokens, encoded by the samples topic codec) on
 *   - a raw kafkajs producer/consumer loop (no layers of ours),
 *   - the Kafka bus (same broker, same record bytes, commit per record),
 *   - the embedded bus (SQLite file in a temp folder),
 * and the memory held under a slow consumer (pause works: memory stays flat, not topic-sized).
 * Starts infra/kafka's broker if KAFKA_URL is not set and none is up (and stops it afterwards).
 * Targets: Kafka bus ≥ 0.9 × raw kafkajs records/s; embedded ≥ 50 MB/s.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import kafkajs from 'kafkajs';
import type { Bus } from '../topics/bus.ts';
import { openEmbeddedBus } from '../topics/embedded.ts';
import { openKafkaBus } from '../topics/kafka.ts';
import { kafkaLogCreator } from '../topics/kafka-log.ts';
import { samplesTopic, type SamplesGroup } from '../topics/samples.ts';
import { Rng } from '../src/util/random.ts';

const { Kafka, logLevel, Partitioners } = kafkajs;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const RECORDS = arg('records', 1000);
const CHUNK = arg('chunk', 32);
const SLOW_SECONDS = arg('slow-seconds', 3);
const ROUNDS = arg('rounds', 2);
const PARTITIONS = 4;

/** One realistic samples record: 16 responses × 512 tokens with text of typical length. */
function samplesRecord(): Uint8Array {
  const rng = new Rng(1234);
  const words = ['the', 'model', 'answer', 'because', 'therefore', 'value', 'step', 'result', 'is', 'of'];
  const group: SamplesGroup = {
    promptId: 'bench-prompt-000000',
    prompt: 'Explain, step by step, why the sum of two even numbers is even.',
    promptTokenIds: Int32Array.from({ length: 24 }, () => rng.int(32000)),
    round: 3,
    policyVersion: 3,
    runSeed: 42,
    responses: Array.from({ length: 16 }, (_, k) => {
      const tokenIds = Int32Array.from({ length: 512 }, () => rng.int(32000));
      const text = Array.from({ length: 512 }, () => words[rng.int(words.length)]).join(' ');
      return {
        k,
        seed: rng.nextUint32(),
        tokenIds,
        text,
        charLength: [...text].length,
        tokenLength: 512,
        finishReason: 'length' as const,
        policyLogp: -300 - rng.next() * 100,
      };
    }),
  };
  return samplesTopic.encode(group);
}

interface Result {
  name: string;
  seconds: number;
  records: number;
  bytes: number;
}

const uniq = (label: string) => `bench-${label}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;

/** Producer and consumer run together; the clock stops when the last record is consumed and committed. */
async function benchBus(name: string, bus: Bus, value: Uint8Array): Promise<Result> {
  const topic = uniq('topic');
  await bus.createTopic(topic, { partitions: PARTITIONS });
  const start = performance.now();
  let consumed = 0;
  let committed = 0;
  const done = new Promise<void>((resolve, reject) => {
    const sub = bus.consume({ groupId: uniq('group'), topics: [topic] }).subscribe({
      next: (r) => {
        consumed++;
        r.commit().then(() => {
          if (++committed === RECORDS) {
            sub.unsubscribe();
            resolve();
          }
        }, reject);
      },
      error: reject,
    });
  });
  for (let i = 0; i < RECORDS; i += CHUNK) {
    const n = Math.min(CHUNK, RECORDS - i);
    await bus.produce(topic, Array.from({ length: n }, (_, j) => ({ key: `prompt-${i + j}`, value })));
  }
  await done;
  const seconds = (performance.now() - start) / 1000;
  if (consumed !== RECORDS) throw new Error(`${name}: consumed ${consumed} of ${RECORDS}`);
  return { name, seconds, records: RECORDS, bytes: RECORDS * value.length };
}

/** The same loop with kafkajs alone: idempotent acks=all producer, eachBatch consumer with commits. */
async function benchRawKafkajs(url: URL, value: Uint8Array): Promise<Result> {
  const kafka = new Kafka({ clientId: 'bench-raw', brokers: [url.host], logLevel: logLevel.WARN, logCreator: kafkaLogCreator });
  const admin = kafka.admin();
  await admin.connect();
  const topic = uniq('raw');
  await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true });
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  const consumer = kafka.consumer({ groupId: uniq('raw-group'), maxWaitTimeInMs: 250, allowAutoTopicCreation: false });
  await producer.connect();
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const buffer = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  const start = performance.now();
  let consumed = 0;
  const done = new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
        for (const m of batch.messages) {
          consumed++;
          resolveOffset(m.offset);
        }
        await commitOffsetsIfNecessary({ topics: [{ topic, partitions: [{ partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }] }] });
        if (consumed >= RECORDS) resolve();
      },
    });
  });
  for (let i = 0; i < RECORDS; i += CHUNK) {
    const n = Math.min(CHUNK, RECORDS - i);
    await producer.send({ topic, acks: -1, messages: Array.from({ length: n }, (_, j) => ({ key: `prompt-${i + j}`, value: buffer })) });
  }
  await done;
  const seconds = (performance.now() - start) / 1000;
  await Promise.all([consumer.disconnect(), producer.disconnect()]);
  await admin.disconnect();
  return { name: 'raw kafkajs', seconds, records: RECORDS, bytes: RECORDS * value.length };
}

/** A consumer committing one record every 20 ms while the topic holds RECORDS records: memory stays flat. */
async function slowConsumer(name: string, bus: Bus, value: Uint8Array): Promise<string> {
  const topic = uniq('slow');
  await bus.createTopic(topic, { partitions: PARTITIONS });
  for (let i = 0; i < RECORDS; i += CHUNK) {
    const n = Math.min(CHUNK, RECORDS - i);
    await bus.produce(topic, Array.from({ length: n }, (_, j) => ({ key: `prompt-${i + j}`, value })));
  }
  global.gc?.();
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakExternal = base.external + base.arrayBuffers;
  let delivered = 0;
  const maxInFlight = 16;
  const sub = bus.consume({ groupId: uniq('slow-group'), topics: [topic], maxInFlight }).subscribe({
    next: (r) => {
      delivered++;
      setTimeout(() => void r.commit(), 20 * Math.min(delivered, maxInFlight));
    },
  });
  const end = Date.now() + SLOW_SECONDS * 1000;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakExternal = Math.max(peakExternal, m.external + m.arrayBuffers);
  }
  sub.unsubscribe();
  const mb = (b: number) => (b / 2 ** 20).toFixed(1);
  return (
    `${name}: topic ${mb(RECORDS * value.length)} MB; slow consumer (maxInFlight ${maxInFlight}) got ${delivered} records in ` +
    `${SLOW_SECONDS} s; peak RSS +${mb(peakRss - base.rss)} MB, peak buffers +${mb(peakExternal - base.external - base.arrayBuffers)} MB`
  );
}

function ensureBroker(): { url: URL; started: boolean } {
  if (process.env.KAFKA_URL) return { url: new URL(process.env.KAFKA_URL), started: false };
  const infra = fileURLToPath(new URL('../infra/kafka/', import.meta.url));
  const start = spawnSync('bash', [`${infra}start.sh`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (start.status !== 0) throw new Error('infra/kafka/start.sh failed');
  const wait = spawnSync('bash', [`${infra}wait.sh`, '120'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (wait.status !== 0) throw new Error('infra/kafka/wait.sh failed');
  return { url: new URL(`kafka://${wait.stdout.trim().split('\n').pop()}`), started: start.stdout.includes('kafka: started') };
}

async function main(): Promise<void> {
  const value = samplesRecord();
  console.log(`record: one samples group (16 × 512 tokens) = ${(value.length / 1024).toFixed(1)} KiB; ${RECORDS} records, produced in chunks of ${CHUNK}, ${PARTITIONS} partitions`);
  const broker = ensureBroker();
  const dir = mkdtempSync(join(tmpdir(), 'dice-bench-bus-'));
  try {
    const kafkaBus = await openKafkaBus(broker.url);
    const embedded = await openEmbeddedBus(join(dir, 'bench.db'));
    // Best of ROUNDS, alternating the cases, so JIT warm-up and a noisy neighbour hit all alike.
    const best = new Map<string, Result>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const r of [
        await benchRawKafkajs(broker.url, value),
        await benchBus('Kafka bus', kafkaBus, value),
        await benchBus('embedded bus', embedded, value),
      ]) {
        const prev = best.get(r.name);
        if (!prev || r.seconds < prev.seconds) best.set(r.name, r);
      }
    }
    const results = [...best.values()];

    const rows = results.map((r) => ({
      bus: r.name,
      'records/s': Math.round(r.records / r.seconds),
      'MB/s': +(r.bytes / 2 ** 20 / r.seconds).toFixed(1),
      seconds: +r.seconds.toFixed(2),
    }));
    console.table(rows);
    const raw = rows[0]['records/s'];
    console.log(`Kafka bus / raw kafkajs = ${(rows[1]['records/s'] / raw).toFixed(2)} (target ≥ 0.9)`);
    console.log(`embedded bus = ${rows[2]['MB/s']} MB/s (target ≥ 50)`);
    console.log(await slowConsumer('Kafka bus', kafkaBus, value));
    console.log(await slowConsumer('embedded bus', embedded, value));
    await kafkaBus.close();
    await embedded.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    if (broker.started) spawnSync('bash', [fileURLToPath(new URL('../infra/kafka/stop.sh', import.meta.url))], { stdio: 'inherit' });
  }
}

await main();
