import { randomUUID } from 'node:crypto';
import kafkajs from 'kafkajs';
import type { Admin, Kafka as KafkaClient, Message, Producer, TopicMessages } from 'kafkajs';
import { Observable } from 'rxjs';
import type {
  Bus,
  ConsumedRecord,
  ConsumeOptions,
  ProduceRecord,
  RecordPosition,
  StartPosition,
  TopicConfig,
  TopicInfo,
  TopicRecords,
} from './bus.ts';
import { GroupConsumer, type ConsumerHost } from './kafka-consumer.ts';
import { sleep, withRetry } from './kafka-retry.ts';
import { runTransaction, waitVisible, type OffsetCommit, type PartitionEnd } from './kafka-transaction.ts';
import { kafkaLogCreator, kafkaLogLevel } from './kafka-log.ts';
import { displayUrl, parseKafkaUrl, type KafkaBusOptions } from './kafka-options.ts';
import { partitionForKey } from './partitioner.ts';
import { checkTopicName } from './topic-name.ts';

export type { KafkaBusOptions } from './kafka-options.ts';

const { Kafka, Partitioners } = kafkajs;

/**
 * The Kafka bus (kafkajs against a real broker; infra/kafka/ runs one on 127.0.0.1).
 *
 * - produce: one idempotent producer (acks=all). Concurrent produce() calls are merged into one
 *   request while the previous one is in flight (natural batching, no added latency), up to
 *   MAX_REQUEST_BYTES per request. Partitions are chosen here (murmur2 of the key, as Kafka's default
 *   partitioner and the embedded bus do) so each record's offset is known from the partition's base offset.
 * - consume: one kafkajs consumer per subscription (see kafka-consumer.ts): explicit commits of the
 *   contiguous done prefix per partition, pause/resume for backpressure, read_committed.
 * - produceAndCommit: a transactional producer (one transactional.id per bus instance unless given)
 *   writes outputs and the consumed offsets (sendOffsets) in one transaction.
 */
export async function openKafkaBus(url: URL | string, overrides: Partial<KafkaBusOptions> = {}): Promise<KafkaBus> {
  const options = parseKafkaUrl(typeof url === 'string' ? new URL(url) : url, overrides);
  const bus = new KafkaBus(options);
  try {
    await bus.connect();
  } catch (err) {
    await bus.close().catch(() => {});
    throw new Error(`kafka bus: cannot reach ${bus.url}: ${(err as Error).message} (is a broker running? infra/kafka/start.sh starts one)`);
  }
  return bus;
}

/** Upper bound of one produce request (the broker's message.max.bytes in infra/ is 16 MiB per batch). */
const MAX_REQUEST_BYTES = 4 << 20;

interface PendingProduce {
  topic: string;
  messages: Message[];
  positions: RecordPosition[];
  /** Messages of this call not yet acknowledged. */
  remaining: number;
  resolve: (positions: RecordPosition[]) => void;
  reject: (err: unknown) => void;
}

export class KafkaBus implements Bus {
  readonly url: string;
  private readonly kafka: KafkaClient;
  readonly options: KafkaBusOptions;
  private admin: Admin;
  private producer: Producer;
  private producerReady: Promise<void> | null = null;
  private txProducer: Producer | null = null;
  private txQueue: Promise<unknown> = Promise.resolve();
  private readonly partitionCounts = new Map<string, number>();
  private readonly roundRobin = new Map<string, number>();
  private queue: Array<{ call: PendingProduce; index: number }> = [];
  private sending = false;
  private closed = false;
  private readonly consumers = new Set<GroupConsumer>();

  constructor(options: KafkaBusOptions) {
    this.options = options;
    this.url = displayUrl(options);
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      ssl: options.ssl,
      sasl: options.sasl,
      logLevel: kafkaLogLevel(),
      logCreator: kafkaLogCreator,
      connectionTimeout: 3000,
      requestTimeout: 30_000,
    });
    this.admin = this.kafka.admin();
    this.producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
  }

  async connect(): Promise<void> {
    await this.admin.connect();
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    this.assertOpen();
    checkTopicName(name);
    if (!Number.isInteger(config.partitions) || config.partitions < 1) {
      throw new Error(`createTopic ${name}: partitions must be a positive integer, got ${config.partitions}`);
    }
    let created: boolean;
    try {
      created = await this.admin.createTopics({
        topics: [{ topic: name, numPartitions: config.partitions }],
        waitForLeaders: true,
      });
    } catch (err) {
      // kafkajs waits for leaders by polling metadata, which a fresh KRaft broker can answer with
      // UNKNOWN_TOPIC_OR_PARTITION for a topic it has just created: wait for the topic ourselves.
      if ((err as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION') throw err;
      created = false;
    }
    if (!created) {
      // Created a moment ago by another client, perhaps: its metadata can lag the "already exists" answer.
      const existing = await this.awaitTopic(name);
      if (existing < config.partitions) {
        throw new Error(`createTopic ${name}: the topic exists with ${existing} partitions, fewer than the ${config.partitions} asked for`);
      }
    } else {
      this.partitionCounts.set(name, config.partitions);
    }
  }

  async listTopics(): Promise<TopicInfo[]> {
    this.assertOpen();
    const names = (await withRetry(() => this.admin.listTopics())).filter((t) => !t.startsWith('__')).sort();
    if (names.length === 0) return [];
    const { topics } = await withRetry(() => this.admin.fetchTopicMetadata({ topics: names }));
    const result: TopicInfo[] = [];
    for (const t of topics) {
      const offsets = await withRetry(() => this.admin.fetchTopicOffsets(t.name));
      const endOffsets = new Array<number>(t.partitions.length).fill(0);
      for (const o of offsets) endOffsets[o.partition] = Number(o.high);
      result.push({ name: t.name, partitions: t.partitions.length, endOffsets });
    }
    return result.sort((a, b) => a.name.localeCompare(b.name));
  }

  async produce(topic: string, records: ProduceRecord[]): Promise<RecordPosition[]> {
    this.assertOpen();
    if (records.length === 0) return [];
    const messages = await this.toMessages(topic, records, 'produce');
    if (!this.producerReady) this.producerReady = this.producer.connect();
    await this.producerReady;
    return new Promise<RecordPosition[]>((resolve, reject) => {
      const call: PendingProduce = { topic, messages, positions: new Array(messages.length), remaining: messages.length, resolve, reject };
      for (let i = 0; i < messages.length; i++) this.queue.push({ call, index: i });
      void this.pump();
    });
  }

  /** Sends the queue in order, one request at a time, each as large as the queue allows (≤ MAX_REQUEST_BYTES). */
  private async pump(): Promise<void> {
    if (this.sending) return;
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        let bytes = 0;
        let n = 0;
        while (n < this.queue.length && (n === 0 || bytes < MAX_REQUEST_BYTES)) {
          const { call, index } = this.queue[n];
          bytes += (call.messages[index].value as Buffer).length + 64;
          n++;
        }
        const slice = this.queue.splice(0, n);
        const byTopic = new Map<string, Message[]>();
        for (const { call, index } of slice) {
          let list = byTopic.get(call.topic);
          if (!list) byTopic.set(call.topic, (list = []));
          list.push(call.messages[index]);
        }
        const topicMessages: TopicMessages[] = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
        try {
          const meta = await this.producer.sendBatch({ topicMessages, acks: -1 });
          const next = new Map<string, number>();
          for (const m of meta) next.set(`${m.topicName}\0${m.partition}`, Number(m.baseOffset));
          for (const { call, index } of slice) {
            const partition = call.messages[index].partition!;
            const key = `${call.topic}\0${partition}`;
            const offset = next.get(key)!;
            next.set(key, offset + 1);
            call.positions[index] = { topic: call.topic, partition, offset };
            if (--call.remaining === 0) call.resolve(call.positions);
          }
        } catch (err) {
          const failed = new Set(slice.map((s) => s.call));
          // A call split over two requests fails as a whole; drop its queued rest too.
          this.queue = this.queue.filter((q) => !failed.has(q.call));
          for (const call of failed) call.reject(err);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  private async toMessages(topic: string, records: ProduceRecord[], what: string): Promise<Message[]> {
    checkTopicName(topic);
    const partitions = await this.partitionCount(topic);
    return records.map((r, i) => {
      if (!(r.value instanceof Uint8Array)) throw new Error(`${what} ${topic}: record ${i}: value must be a Uint8Array`);
      if (r.key !== null && typeof r.key !== 'string') throw new Error(`${what} ${topic}: record ${i}: key must be a string or null`);
      let partition: number;
      if (r.partition !== undefined) {
        if (!Number.isInteger(r.partition) || r.partition < 0 || r.partition >= partitions) {
          throw new Error(`${what} ${topic}: record ${i}: partition ${r.partition} is out of range 0..${partitions - 1}`);
        }
        partition = r.partition;
      } else if (r.key !== null) {
        partition = partitionForKey(r.key, partitions);
      } else {
        const n = this.roundRobin.get(topic) ?? 0;
        this.roundRobin.set(topic, n + 1);
        partition = n % partitions;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(r.headers ?? {})) {
        if (typeof v !== 'string') throw new Error(`${what} ${topic}: record ${i}: header ${k} must be a string`);
        headers[k] = v;
      }
      return {
        key: r.key,
        value: Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength),
        headers,
        partition,
        timestamp: String(r.timestamp ?? Date.now()),
      };
    });
  }

  async partitionCount(topic: string): Promise<number> {
    const cached = this.partitionCounts.get(topic);
    if (cached !== undefined) return cached;
    return this.fetchPartitionCount(topic);
  }

  private async awaitTopic(topic: string, timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.fetchPartitionCount(topic);
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(100);
      }
    }
  }

  private async fetchPartitionCount(topic: string): Promise<number> {
    const names = await withRetry(() => this.admin.listTopics());
    if (!names.includes(topic)) {
      throw new Error(`topic ${JSON.stringify(topic)} does not exist on ${this.url} (create it first: dice topics create)`);
    }
    const { topics } = await withRetry(() => this.admin.fetchTopicMetadata({ topics: [topic] }));
    const n = topics[0].partitions.length;
    this.partitionCounts.set(topic, n);
    return n;
  }

  consume(options: ConsumeOptions): Observable<ConsumedRecord> {
    return new Observable<ConsumedRecord>((subscriber) => {
      if (this.closed) {
        subscriber.error(new Error(`consume: the bus ${this.url} is closed`));
        return;
      }
      const consumer = new GroupConsumer(this.consumerHost(), options, subscriber);
      this.consumers.add(consumer);
      consumer.start();
      return () => consumer.unsubscribe();
    });
  }

  produceAndCommit(groupId: string, outputs: TopicRecords[], consumed: RecordPosition[]): Promise<void> {
    this.assertOpen();
    // One transaction at a time per transactional producer.
    const run = this.txQueue.then(() => this.transact(groupId, outputs, consumed));
    this.txQueue = run.catch(() => {});
    return run;
  }

  private async transact(groupId: string, outputs: TopicRecords[], consumed: RecordPosition[]): Promise<void> {
    if (!groupId) throw new Error('produceAndCommit: groupId is required');
    const byTopic = new Map<string, Message[]>();
    for (const out of outputs) {
      if (out.records.length === 0) continue;
      const messages = await this.toMessages(out.topic, out.records, 'produceAndCommit');
      byTopic.set(out.topic, [...(byTopic.get(out.topic) ?? []), ...messages]);
    }
    const topicMessages: TopicMessages[] = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    // Offsets to commit: per partition, after the highest consumed offset, but never past a record
    // that a local consumer delivered and that is still in flight (that would skip it on a crash).
    const maxByPartition = new Map<string, { topic: string; partition: number; offsets: number[] }>();
    for (const c of consumed) {
      const key = `${c.topic}\0${c.partition}`;
      let e = maxByPartition.get(key);
      if (!e) maxByPartition.set(key, (e = { topic: c.topic, partition: c.partition, offsets: [] }));
      e.offsets.push(c.offset);
    }
    const commits: Array<{ topic: string; partition: number; offset: number }> = [];
    for (const e of maxByPartition.values()) {
      const local = this.localPartition(groupId, e.topic, e.partition);
      const offset = local ? local.transactionalCommitOffset(e.offsets) : Math.max(...e.offsets) + 1;
      if (offset !== null) commits.push({ topic: e.topic, partition: e.partition, offset });
    }

    const lastOffsets = await this.runTransaction(groupId, topicMessages, commits, 'produceAndCommit');
    for (const c of consumed) this.localPartition(groupId, c.topic, c.partition)?.doneByTransaction(c.offset);
    for (const c of commits) this.localPartition(groupId, c.topic, c.partition)?.committedByTransaction(c.offset);
    // The broker writes the commit markers just after EndTxn returns; wait for them so that what
    // this call wrote is visible (committed offsets, read_committed end offsets) once it resolves.
    await this.waitVisible(groupId, commits, lastOffsets);
  }

  /** One transaction on the bus's transactional producer (made on first use). */
  private async runTransaction(groupId: string, topicMessages: TopicMessages[], commits: OffsetCommit[], what: string): Promise<PartitionEnd[]> {
    if (!this.txProducer) {
      this.txProducer = this.kafka.producer({
        transactionalId: this.options.transactionalId ?? `${this.options.clientId}-${randomUUID()}`,
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      await this.txProducer.connect();
    }
    return runTransaction(this.txProducer, groupId, topicMessages, commits, what);
  }

  private waitVisible(groupId: string, commits: OffsetCommit[], ends: PartitionEnd[], exact = false): Promise<void> {
    return waitVisible(
      { committed: (topic) => this.committed(groupId, topic), endOffsets: (topic) => withRetry(() => this.admin.fetchTopicOffsets(topic)) },
      groupId,
      commits,
      ends,
      exact,
    );
  }

  private localPartition(groupId: string, topic: string, partition: number) {
    for (const c of this.consumers) {
      if (c.groupId !== groupId) continue;
      const p = c.partitionState(topic, partition);
      if (p) return p;
    }
    return undefined;
  }

  /**
   * Resolves once this bus's members of the group that are leaving (unsubscribed, read to the end)
   * are gone. A member joining while another still leaves forces a rebalance in which kafkajs can
   * crash (its offset manager of the old generation reads offsets the new one has cleared), and the
   * newcomer should resume after the leaver's last commit anyway.
   */
  membersLeft(groupId: string): Promise<void> {
    return Promise.all([...this.consumers].filter((c) => c.groupId === groupId).map((c) => c.leaving)).then(() => {});
  }

  async seek(groupId: string, topic: string, position: StartPosition): Promise<void> {
    this.assertOpen();
    if (position.kind === 'committed') return;
    const partitions = await this.partitionCount(topic);
    const bounds = await withRetry(() => this.admin.fetchTopicOffsets(topic));
    const low = new Map(bounds.map((b) => [b.partition, Number(b.low)]));
    const high = new Map(bounds.map((b) => [b.partition, Number(b.high)]));
    let targets: Array<{ partition: number; offset: number }>;
    if (position.kind === 'beginning') targets = [...low].map(([partition, offset]) => ({ partition, offset }));
    else if (position.kind === 'end') targets = [...high].map(([partition, offset]) => ({ partition, offset }));
    else if (position.kind === 'timestamp') {
      const found = await withRetry(() => this.admin.fetchTopicOffsetsByTimestamp(topic, position.timestamp));
      targets = found.map((f) => ({ partition: f.partition, offset: Number(f.offset) }));
    } else {
      if (!Number.isInteger(position.partition) || position.partition < 0 || position.partition >= partitions) {
        throw new Error(`seek ${topic}: partition ${position.partition} is out of range 0..${partitions - 1}`);
      }
      const p = position.partition;
      targets = [{ partition: p, offset: Math.max(low.get(p)!, Math.min(position.offset, high.get(p)!)) }];
    }
    await this.membersLeft(groupId);
    const [group] = (await withRetry(() => this.admin.describeGroups([groupId]))).groups;
    if (group && group.state !== 'Empty' && group.state !== 'Dead') {
      throw new Error(`seek ${topic} for group ${groupId}: the group has active members (state ${group.state}); stop its consumers first`);
    }
    // kafkajs's admin.setOffsets joins the group with a throw-away consumer (seconds); a transaction
    // that only commits offsets (TxnOffsetCommit) moves them in milliseconds, atomically.
    const commits = targets.map((t) => ({ topic, partition: t.partition, offset: t.offset }));
    const run = this.txQueue.then(async () => {
      await this.runTransaction(groupId, [], commits, 'seek');
      await this.waitVisible(groupId, commits, [], true);
    });
    this.txQueue = run.catch(() => {});
    await run;
  }

  async committed(groupId: string, topic: string): Promise<number[]> {
    this.assertOpen();
    const partitions = await this.partitionCount(topic);
    const result = new Array<number>(partitions).fill(-1);
    const [entry] = await withRetry(() => this.admin.fetchOffsets({ groupId, topics: [topic] }));
    for (const p of entry?.partitions ?? []) if (p.partition < partitions) result[p.partition] = Number(p.offset);
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.consumers].map((c) => c.close(this.options.drainTimeoutMs)));
    await this.txQueue;
    while (this.sending) await sleep(5);
    await Promise.all([
      this.producerReady ? this.producer.disconnect().catch(() => {}) : undefined,
      this.txProducer?.disconnect().catch(() => {}),
      this.admin.disconnect().catch(() => {}),
    ]);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** What this bus gives a group consumer (see ConsumerHost). */
  private consumerHost(): ConsumerHost {
    return {
      options: this.options,
      admin: this.admin,
      newConsumer: (config) => this.kafka.consumer(config),
      partitionCount: (topic) => this.partitionCount(topic),
      seek: (groupId, topic, from) => this.seek(groupId, topic, from),
      membersLeft: (groupId) => this.membersLeft(groupId),
      forget: (consumer) => void this.consumers.delete(consumer),
    };
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`the bus ${this.url} is closed`);
  }
}
