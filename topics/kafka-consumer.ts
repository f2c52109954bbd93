import type { Admin, Consumer, ConsumerConfig, EachBatchPayload, IHeaders, KafkaMessage } from 'kafkajs';
import type { Subscriber } from 'rxjs';
import type { ConsumedRecord, ConsumeOptions, Headers, StartPosition } from './bus.ts';
import type { KafkaBusOptions } from './kafka-options.ts';
import { withRetry } from './kafka-retry.ts';
import { OffsetTracker } from './offset-tracker.ts';
import { KafkaPartitionState } from './kafka-partition-state.ts';

/**
 * One consume() subscription on the Kafka bus: a kafkajs consumer in the group, with
 *
 * - explicit commits (autoCommit off): a record's commit() marks it done; the committed offset of a
 *   partition is the first offset not yet done (OffsetTracker), or, with nothing in flight, the
 *   position after the last record looked at (so transaction markers after the last record are
 *   committed past too). Commits made in the same turn share one OffsetCommit request;
 * - backpressure: at maxInFlight records delivered and not done, delivery waits for a commit; if
 *   none comes soon, fetching pauses until one does; a batch cut short is not resolved, so kafkajs
 *   fetches the rest again;
 * - rebalances: a revoked partition's in-flight records are dropped from the count (their commits
 *   become no-ops and the new owner gets them again); a kept partition is re-read by kafkajs from
 *   its committed offset, and records this member already delivered are skipped;
 * - untilEnd: the read_committed end offsets are taken when consumption starts; the subscription
 *   completes once every assigned partition's position reached its end and all is committed.
 */

/** How long a batch waits for room at maxInFlight before the consumer pauses fetching. */
const ROOM_WAIT_MS = 1000;

const key = (topic: string, partition: number) => `${topic}\0${partition}`;

/**
 * What a group consumer needs from its bus, injected (as kafkajs gives its offset manager the
 * cluster) rather than reached into: settings, the shared admin client, a new kafkajs consumer,
 * the bus's topic and group helpers, and a way to say it is gone.
 */
export interface ConsumerHost {
  readonly options: Readonly<Pick<KafkaBusOptions, 'sessionTimeoutMs' | 'heartbeatIntervalMs' | 'maxWaitMs' | 'drainTimeoutMs'>>;
  readonly admin: Admin;
  newConsumer(config: ConsumerConfig): Consumer;
  partitionCount(topic: string): Promise<number>;
  seek(groupId: string, topic: string, from: StartPosition): Promise<void>;
  /** Resolves once this bus's members of the group that are leaving have left. */
  membersLeft(groupId: string): Promise<void>;
  /** The consumer has closed or left. */
  forget(consumer: GroupConsumer): void;
}

export class GroupConsumer {
  readonly groupId: string;
  private readonly topics: string[];
  private readonly maxInFlight: number;
  private consumer: Consumer | null = null;
  private readonly states = new Map<string, KafkaPartitionState>();
  private assigned: Set<string> | null = null;
  private ends: Map<string, number> | null = null;
  private endSignalled = false;
  private inFlight = 0;
  private backpressured = false;
  private readonly ended = new Set<string>();
  private stopping = false;
  private left = false;
  private started: Promise<void> = Promise.resolve();
  private closing: Promise<void> | null = null;
  private flushChain: Promise<void> = Promise.resolve();
  private roomWaiter: (() => void) | null = null;
  private pendingFlush: Promise<void> | null = null;

  constructor(
    private readonly bus: ConsumerHost,
    private readonly options: ConsumeOptions,
    private readonly subscriber: Subscriber<ConsumedRecord>,
  ) {
    this.groupId = options.groupId;
    this.topics = [...new Set(options.topics)];
    this.maxInFlight = options.maxInFlight ?? 1000;
  }

  get isActive(): boolean {
    return !this.left;
  }

  /**
   * Resolves once this consumer has left its group: immediately if it is not closing or never joined
   * (so a consumer still starting, which waits on the group's leavers, never waits on itself).
   */
  get leaving(): Promise<void> {
    return (this.consumer && this.closing) || Promise.resolve();
  }

  partitionState(topic: string, partition: number): KafkaPartitionState | undefined {
    return this.states.get(key(topic, partition));
  }

  start(): void {
    this.started = this.run().catch((err) => this.fail(err));
  }

  private async run(): Promise<void> {
    if (!this.groupId) throw new Error('consume: groupId is required');
    if (this.topics.length === 0) throw new Error('consume: topics must name at least one topic');
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 1) {
      throw new Error(`consume: maxInFlight must be a positive integer, got ${this.options.maxInFlight}`);
    }
    for (const t of this.topics) await this.bus.partitionCount(t);
    const from = this.options.from ?? { kind: 'committed' };
    for (const t of this.topics) await this.bus.seek(this.groupId, t, from);
    await this.bus.membersLeft(this.groupId);
    if (this.options.untilEnd) {
      this.ends = new Map();
      for (const t of this.topics) {
        for (const o of await withRetry(() => this.bus.admin.fetchTopicOffsets(t))) this.ends.set(key(t, o.partition), Number(o.offset));
      }
    }
    if (this.stopping) return;

    const opts = this.bus.options;
    const consumer = this.bus.newConsumer({
      groupId: this.groupId,
      sessionTimeout: opts.sessionTimeoutMs,
      rebalanceTimeout: Math.max(opts.sessionTimeoutMs, 5000),
      heartbeatInterval: opts.heartbeatIntervalMs,
      maxWaitTimeInMs: opts.maxWaitMs,
      allowAutoTopicCreation: false,
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (e) => this.onAssignment(e.payload.memberAssignment));
    // Batches holding only transaction markers or aborted records never reach eachBatch.
    consumer.on(consumer.events.END_BATCH_PROCESS, (e) => {
      if (e.payload.batchSize !== 0) return;
      const st = this.states.get(key(e.payload.topic, e.payload.partition));
      if (st) st.position = Math.max(st.position, Number(e.payload.lastOffset) + 1);
      this.checkEnd();
    });
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) this.fail(e.payload.error);
    });
    await consumer.connect();
    await consumer.subscribe({ topics: this.topics, fromBeginning: true });
    if (this.stopping) return;
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  private onAssignment(memberAssignment: Record<string, number[]>): void {
    const next = new Set<string>();
    const fresh: KafkaPartitionState[] = [];
    for (const [topic, partitions] of Object.entries(memberAssignment)) {
      for (const p of partitions) {
        const k = key(topic, p);
        next.add(k);
        if (!this.states.has(k)) {
          const st = new KafkaPartitionState(this, topic, p);
          this.states.set(k, st);
          fresh.push(st);
        }
      }
    }
    for (const [k, st] of this.states) {
      if (next.has(k)) continue;
      st.revoked = true;
      this.states.delete(k);
      this.ended.delete(k);
      this.recordsDone(st.tracker?.inFlight ?? 0);
    }
    this.assigned = next;
    this.applyPause();
    if (fresh.length > 0) void this.loadPositions(fresh).catch((err) => this.fail(err));
    else this.checkEnd();
  }

  /** Where new partitions start: the committed offset, or the earliest offset where none is. */
  private async loadPositions(fresh: KafkaPartitionState[]): Promise<void> {
    const admin = this.bus.admin;
    const topics = [...new Set(fresh.map((s) => s.topic))];
    const committed = await withRetry(() => admin.fetchOffsets({ groupId: this.groupId, topics }));
    for (const t of topics) {
      const low = new Map((await withRetry(() => admin.fetchTopicOffsets(t))).map((o) => [o.partition, Number(o.low)]));
      const forTopic = committed.find((c) => c.topic === t)?.partitions ?? [];
      for (const st of fresh.filter((s) => s.topic === t)) {
        const c = Number(forTopic.find((p) => p.partition === st.partition)?.offset ?? -1);
        // With none committed, committing the earliest offset would be no progress either.
        st.lastCommitted = Math.max(st.lastCommitted, c >= 0 ? c : (low.get(st.partition) ?? 0));
        st.position = Math.max(st.position, c >= 0 ? c : (low.get(st.partition) ?? 0));
      }
    }
    this.checkEnd();
  }

  private async onBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const k = key(batch.topic, batch.partition);
    let st = this.states.get(k);
    if (!st) {
      st = new KafkaPartitionState(this, batch.topic, batch.partition);
      this.states.set(k, st);
    }
    const end = this.ends?.get(k);
    for (const m of batch.messages) {
      if (this.stopping || this.backpressured || this.subscriber.closed || !isRunning() || isStale() || st.revoked) return;
      const offset = Number(m.offset);
      if (end !== undefined && offset >= end) {
        st.position = Math.max(st.position, end);
        this.ended.add(k);
        this.applyPause();
        this.checkEnd();
        return;
      }
      if (st.tracker && offset < st.tracker.next) {
        resolveOffset(m.offset); // delivered before a rebalance or restart, and still ours
        continue;
      }
      if (this.inFlight >= this.maxInFlight && !(await this.waitForRoom(heartbeat))) {
        // Paused only while still full: room that came as a heartbeat failed would otherwise leave
        // fetching paused with nothing in flight whose commit could resume it.
        if (this.inFlight >= this.maxInFlight) {
          this.backpressured = true;
          this.applyPause();
        }
        return;
      }
      if (this.stopping || this.subscriber.closed || !isRunning() || isStale() || st.revoked) return;
      if (!st.tracker) {
        st.tracker = new OffsetTracker(offset);
        st.lastCommitted = Math.max(st.lastCommitted, offset); // committing where we start is no progress
      }
      st.tracker.deliver(offset);
      st.position = Math.max(st.position, offset + 1);
      this.inFlight++;
      resolveOffset(m.offset);
      this.subscriber.next(this.toRecord(st, m, offset));
    }
    st.position = Math.max(st.position, Number(batch.lastOffset()) + 1);
    if (end !== undefined && st.position >= end) {
      this.ended.add(k);
      this.applyPause();
    }
    this.checkEnd();
  }

  private toRecord(st: KafkaPartitionState, m: KafkaMessage, offset: number): ConsumedRecord {
    const v = m.value ?? Buffer.alloc(0);
    return {
      topic: st.topic,
      partition: st.partition,
      offset,
      key: m.key === null ? null : m.key.toString('utf8'),
      value: new Uint8Array(v.buffer, v.byteOffset, v.byteLength),
      headers: toHeaders(m.headers),
      timestamp: Number(m.timestamp),
      commit: () => this.commit(st, offset),
    };
  }

  private commit(st: KafkaPartitionState, offset: number): Promise<void> {
    if (st.revoked || !st.tracker?.isOutstanding(offset)) return Promise.resolve();
    st.tracker.markDone(offset);
    const flushed = this.requestFlush();
    // A record counts against maxInFlight until its commit() has resolved (and its caller has seen that).
    const release = () => setImmediate(() => this.recordsDone(1));
    flushed.then(release, release);
    return flushed;
  }

  /**
   * At maxInFlight in the middle of a batch: wait a little for a commit (keeping the group session
   * alive), which is cheaper than a pause/resume round (kafkajs sleeps maxWaitMs when all is paused).
   * False when no room came: the caller pauses fetching.
   */
  private async waitForRoom(heartbeat: () => Promise<void>): Promise<boolean> {
    const deadline = Date.now() + ROOM_WAIT_MS;
    while (this.inFlight >= this.maxInFlight && !this.stopping) {
      if (Date.now() >= deadline) return false;
      await new Promise<void>((resolve) => {
        this.roomWaiter = resolve;
        setTimeout(resolve, 100);
      });
      this.roomWaiter = null;
      try {
        await heartbeat();
      } catch {
        return false; // the group is rebalancing: let kafkajs rejoin
      }
    }
    return !this.stopping;
  }

  recordsDone(n: number): void {
    if (n === 0) return;
    this.inFlight -= n;
    if (this.inFlight < this.maxInFlight) {
      this.roomWaiter?.();
      if (this.backpressured) {
        this.backpressured = false;
        this.applyPause();
      }
    }
    if (this.inFlight === 0) this.checkEnd();
  }

  /** Paused: everything while backpressured (or stopping), else the partitions read to their end. */
  private applyPause(): void {
    const c = this.consumer;
    if (!c || this.left) return;
    try {
      for (const topic of this.topics) {
        c.resume([{ topic }]);
        if (this.backpressured || this.stopping) c.pause([{ topic }]);
        else {
          const partitions = [...this.ended].map((k) => k.split('\0')).filter(([t]) => t === topic).map(([, p]) => Number(p));
          if (partitions.length > 0) c.pause([{ topic, partitions }]);
        }
      }
    } catch {
      // Not running yet (or any more): nothing is being fetched.
    }
  }

  /** Commits what is committable; calls made while a flush runs share the next one. */
  requestFlush(): Promise<void> {
    if (this.pendingFlush) return this.pendingFlush;
    const p = this.flushChain
      .then(() => new Promise<void>((r) => setImmediate(r)))
      .then(() => {
        this.pendingFlush = null;
        return this.flush();
      });
    this.pendingFlush = p;
    this.flushChain = p.catch(() => {});
    return p;
  }

  private async flush(): Promise<void> {
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      const due = [...this.states.values()].filter((s) => !s.revoked && s.target() >= 0 && s.target() > s.lastCommitted);
      // Once out of the group the records not committed go back to the group (at-least-once).
      if (due.length === 0 || this.left || !this.consumer) break;
      const targets = due.map((s) => s.target());
      try {
        await this.consumer.commitOffsets(due.map((s, i) => ({ topic: s.topic, partition: s.partition, offset: String(targets[i]) })));
        due.forEach((s, i) => (s.lastCommitted = Math.max(s.lastCommitted, targets[i])));
        break;
      } catch (err) {
        // Rebalancing, a coordinator moving or a broker restarting: retry; revoked partitions drop out.
        if (Date.now() - started > 120_000) {
          throw new Error(`commit (group ${this.groupId}): offsets could not be committed for 120 s: ${(err as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 1000)));
      }
    }
    this.checkEnd();
  }

  private checkEnd(): void {
    if (!this.ends || this.stopping || !this.assigned) return;
    for (const k of this.assigned) {
      const st = this.states.get(k);
      if (!st || st.position < (this.ends.get(k) ?? 0)) return;
    }
    if (!this.endSignalled) {
      this.endSignalled = true;
      this.options.onEndReached?.();
    }
    if (this.inFlight > 0) return;
    for (const k of this.assigned) {
      const st = this.states.get(k)!;
      if (st.target() > st.lastCommitted) {
        void this.requestFlush();
        return;
      }
    }
    // Completes once out of the group, so the group can be seeked or replayed right after.
    void this.close(0);
  }

  /** Unsubscribed: stop fetching, give in-flight records a short while to be committed, leave. */
  unsubscribe(): void {
    void this.close(Math.min(2000, this.bus.options.drainTimeoutMs));
  }

  /** Stops fetching, waits up to `drainMs` for in-flight records to be committed, then leaves the group. */
  close(drainMs: number): Promise<void> {
    if (this.closing) return this.closing;
    this.stopping = true;
    this.closing = (async () => {
      await this.started;
      this.applyPause();
      const deadline = Date.now() + drainMs;
      while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await this.requestFlush().catch(() => {});
      await this.consumer?.disconnect().catch(() => {});
      this.left = true;
      this.bus.forget(this);
      if (!this.subscriber.closed) this.subscriber.complete();
    })();
    return this.closing;
  }

  private fail(err: unknown): void {
    if (this.stopping) return;
    void this.close(0);
    this.subscriber.error(err);
  }
}

function toHeaders(h: IHeaders | undefined): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(h ?? {})) {
    if (v === undefined) continue;
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    out[k] = Buffer.isBuffer(last) ? last.toString('utf8') : String(last);
  }
  return out;
}
