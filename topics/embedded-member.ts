import type Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Subscriber } from 'rxjs';
import type { ConsumedRecord, ConsumeOptions, Headers, StartPosition } from './bus.ts';
import type { EmbeddedBusOptions, RecordRow, StoreStatements, TopicMeta } from './embedded-store.ts';
import { OffsetTracker } from './offset-tracker.ts';

/**
 * Group membership and the fetch loop of the embedded bus: a member registers with a heartbeat,
 * takes the partitions the round-robin assignment gives it (claims), fetches their records up to
 * maxInFlight, commits what the consumer commits, and releases a revoked partition only once its
 * in-flight records are committed.
 */

/** Members alive in this process, across every EmbeddedBus instance (several may share one file). */
export const liveMembers = new Set<string>();

const HEARTBEAT_MS = 200;

/** What a member uses of its bus: the store, the bus's own state, and its wake-ups (injected, not reached into). */
export interface MemberHost {
  readonly db: Database.Database;
  readonly statements: StoreStatements;
  readonly host: string;
  readonly isClosed: boolean;
  readonly settings: Readonly<Required<EmbeddedBusOptions>>;
  /** `${groupId}\0${tp}` → the local member's state of that partition, for produceAndCommit. */
  readonly owners: Map<string, PartitionState>;
  topicMeta(topic: string): TopicMeta;
  seek(groupId: string, topic: string, position: StartPosition): Promise<void>;
  commitBatch(member: GroupMember, marks: Array<{ state: PartitionState; offset: number }>): void;
  memberAlive(memberId: string, row?: { pid: number; host: string; heartbeat_ms: number }): boolean;
  removeMember(member: GroupMember): void;
  waitForChange(ms: number): Promise<void>;
  wake(): void;
}

/** What a member knows about one partition it holds. */
export class PartitionState {
  tracker: OffsetTracker;
  /** Next offset to fetch. */
  position: number;
  revoked = false;
  /** Offsets done by produceAndCommit before the record's own commit() came. */
  constructor(
    readonly member: GroupMember,
    readonly topic: string,
    readonly partition: number,
    readonly tp: number,
    start: number,
  ) {
    this.tracker = new OffsetTracker(start);
    this.position = start;
  }

  markDoneLocally(offset: number): void {
    if (this.tracker.isOutstanding(offset)) {
      this.tracker.markDone(offset);
      this.member.afterCommit(this);
    }
  }

  reset(position: number): void {
    this.member.inFlightDropped(this.tracker.inFlight);
    this.tracker = new OffsetTracker(position);
    this.position = position;
  }
}

export class GroupMember {
  readonly id = `${hostname()}-${process.pid}-${randomUUID()}`;
  readonly groupId: string;
  private readonly topics: string[];
  private readonly maxInFlight: number;
  private readonly held = new Map<number, PartitionState>();
  private assigned = new Set<number>();
  private fetching = true;
  private finished = false;
  private lastRebalance = 0;
  private rebalanceSoon = true;
  inFlight = 0;
  private ends: Map<number, number> | null = null;
  private endSignalled = false;
  private pendingCommits: Array<{ state: PartitionState; offset: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private flushScheduled = false;

  constructor(
    private readonly bus: MemberHost,
    private readonly options: ConsumeOptions,
    private readonly subscriber: Subscriber<ConsumedRecord>,
  ) {
    this.groupId = options.groupId;
    this.topics = [...new Set(options.topics)];
    this.maxInFlight = options.maxInFlight ?? 1000;
    liveMembers.add(this.id);
    if (!options.groupId) throw new Error('consume: groupId is required');
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 1) {
      throw new Error(`consume: maxInFlight must be a positive integer, got ${options.maxInFlight}`);
    }
  }

  start(): void {
    this.run().catch((err) => {
      this.finish();
      this.subscriber.error(err);
    });
  }

  private async run(): Promise<void> {
    const bus = this.bus;
    for (const t of this.topics) bus.topicMeta(t);
    const from = this.options.from ?? { kind: 'committed' };
    for (const t of this.topics) await bus.seek(this.groupId, t, from);
    if (this.options.untilEnd) {
      this.ends = new Map();
      for (const t of this.topics) {
        for (const tp of bus.topicMeta(t).tps) this.ends.set(tp, bus.statements.nextOffset.get(tp)!.next_offset);
      }
    }
    const s = bus.statements;
    s.upsertMember.run(this.id, this.groupId, JSON.stringify(this.topics), process.pid, bus.host, Date.now());
    let idle = 1;
    while (!this.finished && !bus.isClosed) {
      const now = Date.now();
      if (this.rebalanceSoon || now - this.lastRebalance >= HEARTBEAT_MS) this.rebalance();
      if (this.finished) return;
      const fetched = this.fetching ? this.fetchOnce() : 0;
      if (this.finished) return;
      if (this.ends && this.readToEnd()) {
        this.finish();
        this.subscriber.complete();
        return;
      }
      if (fetched > 0) {
        idle = 1;
        await new Promise((r) => setImmediate(r));
      } else {
        await bus.waitForChange(idle);
        idle = Math.min(idle * 2, bus.settings.maxPollIntervalMs);
      }
    }
  }

  /** Heartbeat, drop dead members, compute this member's assignment, take and give up claims. */
  private rebalance(): void {
    const bus = this.bus;
    const s = bus.statements;
    this.lastRebalance = Date.now();
    this.rebalanceSoon = false;
    const newlyHeld: PartitionState[] = [];
    bus.db
      .transaction(() => {
        s.upsertMember.run(this.id, this.groupId, JSON.stringify(this.topics), process.pid, bus.host, Date.now());
        const live: Array<{ id: string; topics: string[] }> = [];
        for (const row of s.groupMembers.all(this.groupId)) {
          if (row.member_id === this.id || bus.memberAlive(row.member_id, row)) {
            live.push({ id: row.member_id, topics: JSON.parse(row.topics) as string[] });
          } else {
            s.deleteMember.run(row.member_id);
            s.deleteMemberClaims.run(row.member_id);
          }
        }
        this.assigned = new Set();
        for (const topic of this.topics) {
          const subscribers = live.filter((m) => m.topics.includes(topic)).map((m) => m.id);
          const meta = bus.topicMeta(topic);
          meta.tps.forEach((tp, partition) => {
            if (subscribers[partition % subscribers.length] !== this.id) return;
            this.assigned.add(tp);
            if (this.held.has(tp)) return;
            const claim = s.claim.get(this.groupId, tp);
            if (claim && claim.member_id !== this.id) {
              this.rebalanceSoon = true; // the previous owner is still draining it
              return;
            }
            s.setClaim.run(this.groupId, tp, this.id);
            const start = s.committed.get(this.groupId, tp)?.committed ?? 0;
            newlyHeld.push(new PartitionState(this, topic, partition, tp, start));
          });
        }
        for (const state of this.held.values()) {
          if (this.assigned.has(state.tp)) continue;
          state.revoked = true;
          if (state.tracker.inFlight === 0) this.release(state);
        }
      })
      .immediate();
    for (const state of newlyHeld) {
      this.held.set(state.tp, state);
      bus.owners.set(`${this.groupId}\0${state.tp}`, state);
    }
  }

  private release(state: PartitionState): void {
    this.bus.statements.releaseClaim.run(this.groupId, state.tp, this.id);
    this.held.delete(state.tp);
    const key = `${this.groupId}\0${state.tp}`;
    if (this.bus.owners.get(key) === state) this.bus.owners.delete(key);
  }

  private fetchOnce(): number {
    const s = this.bus.statements;
    let delivered = 0;
    for (const state of [...this.held.values()]) {
      if (state.revoked || this.finished) continue;
      const room = this.maxInFlight - this.inFlight;
      if (room <= 0) break;
      const end = this.ends?.get(state.tp);
      let limit = Math.min(room, this.bus.settings.fetchRecords);
      if (end !== undefined) limit = Math.min(limit, end - state.position);
      if (limit <= 0) continue;
      const rows = s.fetch.all(state.tp, state.position, limit);
      if (rows.length === 0) continue;
      const last = rows[rows.length - 1].off;
      const skip = new Set(s.doneRange.all(this.groupId, state.tp, state.position, last + 1).map((r) => r.off));
      state.position = last + 1;
      for (const row of rows) {
        if (skip.has(row.off)) continue;
        if (this.finished || this.held.get(state.tp) !== state) break;
        state.tracker.deliver(row.off);
        this.inFlight++;
        delivered++;
        this.subscriber.next(this.toRecord(state, row));
      }
    }
    return delivered;
  }

  private toRecord(state: PartitionState, row: RecordRow): ConsumedRecord {
    const headers: Headers = row.headers ? (JSON.parse(row.headers) as Headers) : {};
    const value = new Uint8Array(row.value.buffer, row.value.byteOffset, row.value.byteLength);
    const offset = row.off;
    return {
      topic: state.topic,
      partition: state.partition,
      offset,
      key: row.key,
      value,
      headers,
      timestamp: row.ts,
      commit: () => this.commit(state, offset),
    };
  }

  private commit(state: PartitionState, offset: number): Promise<void> {
    if (!state.tracker.isOutstanding(offset)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pendingCommits.push({ state, offset, resolve, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushCommits());
      }
    });
  }

  /** Commits queued within one turn of the event loop share one transaction. */
  private flushCommits(): void {
    this.flushScheduled = false;
    const batch = this.pendingCommits.filter((c) => c.state.tracker.isOutstanding(c.offset));
    const all = this.pendingCommits;
    this.pendingCommits = [];
    try {
      if (batch.length > 0 && !this.bus.isClosed) this.bus.commitBatch(this, batch);
    } catch (err) {
      for (const c of all) c.reject(err);
      return;
    }
    for (const c of batch) {
      if (c.state.tracker.isOutstanding(c.offset)) {
        c.state.tracker.markDone(c.offset);
        this.afterCommit(c.state);
      }
    }
    for (const c of all) c.resolve();
    this.bus.wake();
  }

  afterCommit(state: PartitionState): void {
    this.inFlight--;
    if (state.revoked && state.tracker.inFlight === 0 && this.held.get(state.tp) === state && !this.bus.isClosed) {
      this.release(state);
      this.rebalanceSoon = true;
    }
  }

  inFlightDropped(n: number): void {
    this.inFlight -= n;
  }

  private readToEnd(): boolean {
    if (this.rebalanceSoon) return false;
    for (const tp of this.assigned) {
      const state = this.held.get(tp);
      if (!state || state.position < this.ends!.get(tp)!) return false;
    }
    if (!this.endSignalled) {
      this.endSignalled = true;
      this.options.onEndReached?.();
    }
    return this.inFlight === 0;
  }

  stopFetching(): void {
    this.fetching = false;
  }

  /** Leaves the group at once (unsubscribe): undelivered and uncommitted records go back to the group. */
  leave(): void {
    this.finish();
  }

  finish(): void {
    if (this.finished) return;
    this.finished = true;
    liveMembers.delete(this.id);
    this.bus.removeMember(this);
    if (this.pendingCommits.length > 0 && !this.bus.isClosed) this.flushCommits();
    if (!this.bus.isClosed) {
      const s = this.bus.statements;
      this.bus.db
        .transaction(() => {
          for (const state of [...this.held.values()]) this.release(state);
          s.deleteMember.run(this.id);
        })
        .immediate();
    }
    if (!this.subscriber.closed) this.subscriber.complete();
    this.bus.wake();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
