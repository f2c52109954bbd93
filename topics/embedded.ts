import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { Observable, type Subscriber } from 'rxjs';
import type {
  Bus,
  ConsumedRecord,
  ConsumeOptions,
  Headers,
  ProduceRecord,
  RecordPosition,
  StartPosition,
  TopicConfig,
  TopicInfo,
  TopicRecords,
} from './bus.ts';
import { openBusDatabase } from './embedded-file.ts';
import { OffsetTracker } from './offset-tracker.ts';
import { partitionForKey } from './partitioner.ts';

/**
 * The embedded bus: every topic, offset and group membership lives in one SQLite file (WAL mode).
 *
 * Durability: `synchronous=NORMAL` by default. In WAL mode this survives any process crash
 * (SIGKILL included) with no lost commit and no corruption, because a commit is complete once it is
 * in the WAL file (the OS has it); only a power loss or kernel crash can lose the last few commits,
 * never corrupt the file. `sync=full` (in the URL: `embedded:PATH?sync=full`) fsyncs the WAL on every
 * commit, for power-loss durability at a large cost in throughput.
 *
 * Exactly-once within a machine: `produceAndCommit` writes outputs and marks the consumed records
 * done in one transaction. Done-ness survives out-of-order processing: a record done ahead of the
 * committed offset is kept in the `done` table and skipped when the partition is read again, and
 * the committed offset advances over the contiguous done prefix.
 *
 * Consumer groups work within a process and across processes sharing the file: members register in
 * `members` with a heartbeat; partitions of each topic are assigned round-robin over the live
 * members (sorted by id) subscribed to it; a member reads a partition only while it holds its row in
 * `claims`, and gives a revoked partition up only after its in-flight records there are committed,
 * so a hand-over within a machine never redelivers. A member is dead when its process is gone (same
 * host: checked with kill(pid, 0), so a SIGKILLed process is replaced at once) or its heartbeat is
 * older than the session timeout.
 */

export interface EmbeddedBusOptions {
  /** 'normal' (default) or 'full'; see above. */
  synchronous?: 'normal' | 'full';
  /** A member whose heartbeat is older than this is dead (other hosts, hung processes). Default 10 s. */
  sessionTimeoutMs?: number;
  /** Longest idle sleep between polls for records written by other processes. Default 50 ms. */
  maxPollIntervalMs?: number;
  /** Records read per partition per fetch. Default 256. */
  fetchRecords?: number;
  /** How long close() waits for in-flight records to be committed. Default 30 s. */
  drainTimeoutMs?: number;
  /** Refuse to create the file (read-only commands). */
  mustExist?: boolean;
}

/** Members alive in this process, across every EmbeddedBus instance (several may share one file). */
const liveMembers = new Set<string>();

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const HEARTBEAT_MS = 200;

interface TopicMeta {
  name: string;
  partitions: number;
  /** tp ids (rowid of `partitions`) indexed by partition number. */
  tps: number[];
}

interface RecordRow {
  off: number;
  ts: number;
  key: string | null;
  headers: string | null;
  value: Buffer;
}

export async function openEmbeddedBus(path: string, options: EmbeddedBusOptions = {}): Promise<EmbeddedBus> {
  return new EmbeddedBus(path, options);
}

export class EmbeddedBus implements Bus {
  readonly url: string;
  readonly db: Database.Database;
  private readonly options: Required<EmbeddedBusOptions>;
  private readonly topicCache = new Map<string, TopicMeta>();
  private readonly roundRobin = new Map<string, number>();
  private readonly members = new Set<GroupMember>();
  /** `${groupId}\0${tp}` → the local member reading that partition, for produceAndCommit. */
  readonly owners = new Map<string, PartitionState>();
  private waiters: Array<() => void> = [];
  private closed = false;
  private readonly stmts;
  readonly host = hostname();

  constructor(path: string, options: EmbeddedBusOptions = {}) {
    this.options = {
      synchronous: options.synchronous ?? 'normal',
      sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000,
      maxPollIntervalMs: options.maxPollIntervalMs ?? 50,
      fetchRecords: options.fetchRecords ?? 256,
      drainTimeoutMs: options.drainTimeoutMs ?? 30_000,
      mustExist: options.mustExist ?? false,
    };
    const file = resolve(path);
    if (!this.options.mustExist) mkdirSync(dirname(file), { recursive: true });
    this.url = `embedded:${file}`;
    this.db = openBusDatabase(file, { mustExist: options.mustExist });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma(`synchronous = ${this.options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    this.db.pragma('busy_timeout = 10000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS topics(name TEXT PRIMARY KEY, partitions INTEGER NOT NULL, created_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS partitions(tp INTEGER PRIMARY KEY, topic TEXT NOT NULL, partition INTEGER NOT NULL,
        next_offset INTEGER NOT NULL, UNIQUE(topic, partition));
      CREATE TABLE IF NOT EXISTS records(tp INTEGER NOT NULL, off INTEGER NOT NULL, ts INTEGER NOT NULL, key TEXT,
        headers TEXT, value BLOB NOT NULL, PRIMARY KEY(tp, off));
      CREATE TABLE IF NOT EXISTS offsets(group_id TEXT NOT NULL, tp INTEGER NOT NULL, committed INTEGER NOT NULL,
        PRIMARY KEY(group_id, tp)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS done(group_id TEXT NOT NULL, tp INTEGER NOT NULL, off INTEGER NOT NULL,
        PRIMARY KEY(group_id, tp, off)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS members(member_id TEXT PRIMARY KEY, group_id TEXT NOT NULL, topics TEXT NOT NULL,
        pid INTEGER NOT NULL, host TEXT NOT NULL, heartbeat_ms INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS claims(group_id TEXT NOT NULL, tp INTEGER NOT NULL, member_id TEXT NOT NULL,
        PRIMARY KEY(group_id, tp)) WITHOUT ROWID;
    `);
    const db = this.db;
    this.stmts = {
      topic: db.prepare<[string], { name: string; partitions: number }>('SELECT name, partitions FROM topics WHERE name = ?'),
      topicTps: db.prepare<[string], { tp: number; partition: number }>(
        'SELECT tp, partition FROM partitions WHERE topic = ? ORDER BY partition',
      ),
      allTopics: db.prepare<[], { name: string; partitions: number }>('SELECT name, partitions FROM topics ORDER BY name'),
      insertTopic: db.prepare('INSERT INTO topics(name, partitions, created_ms) VALUES (?, ?, ?)'),
      insertPartition: db.prepare('INSERT INTO partitions(topic, partition, next_offset) VALUES (?, ?, 0)'),
      nextOffset: db.prepare<[number], { next_offset: number }>('SELECT next_offset FROM partitions WHERE tp = ?'),
      setNextOffset: db.prepare('UPDATE partitions SET next_offset = ? WHERE tp = ?'),
      insertRecord: db.prepare('INSERT INTO records(tp, off, ts, key, headers, value) VALUES (?, ?, ?, ?, ?, ?)'),
      fetch: db.prepare<[number, number, number], RecordRow>(
        'SELECT off, ts, key, headers, value FROM records WHERE tp = ? AND off >= ? ORDER BY off LIMIT ?',
      ),
      firstAtTime: db.prepare<[number, number], { off: number }>(
        'SELECT off FROM records WHERE tp = ? AND ts >= ? ORDER BY off LIMIT 1',
      ),
      firstOffset: db.prepare<[number], { off: number }>('SELECT off FROM records WHERE tp = ? ORDER BY off LIMIT 1'),
      committed: db.prepare<[string, number], { committed: number }>(
        'SELECT committed FROM offsets WHERE group_id = ? AND tp = ?',
      ),
      setCommitted: db.prepare(
        'INSERT INTO offsets(group_id, tp, committed) VALUES (?, ?, ?) ON CONFLICT(group_id, tp) DO UPDATE SET committed = excluded.committed',
      ),
      doneFrom: db.prepare<[string, number, number], { off: number }>(
        'SELECT off FROM done WHERE group_id = ? AND tp = ? AND off >= ? ORDER BY off',
      ),
      doneRange: db.prepare<[string, number, number, number], { off: number }>(
        'SELECT off FROM done WHERE group_id = ? AND tp = ? AND off >= ? AND off < ? ORDER BY off',
      ),
      insertDone: db.prepare('INSERT OR IGNORE INTO done(group_id, tp, off) VALUES (?, ?, ?)'),
      deleteDoneBelow: db.prepare('DELETE FROM done WHERE group_id = ? AND tp = ? AND off < ?'),
      deleteDoneAll: db.prepare('DELETE FROM done WHERE group_id = ? AND tp = ?'),
      upsertMember: db.prepare(
        `INSERT INTO members(member_id, group_id, topics, pid, host, heartbeat_ms) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(member_id) DO UPDATE SET heartbeat_ms = excluded.heartbeat_ms`,
      ),
      groupMembers: db.prepare<[string], { member_id: string; topics: string; pid: number; host: string; heartbeat_ms: number }>(
        'SELECT member_id, topics, pid, host, heartbeat_ms FROM members WHERE group_id = ? ORDER BY member_id',
      ),
      deleteMember: db.prepare('DELETE FROM members WHERE member_id = ?'),
      deleteMemberClaims: db.prepare('DELETE FROM claims WHERE member_id = ?'),
      claim: db.prepare<[string, number], { member_id: string }>('SELECT member_id FROM claims WHERE group_id = ? AND tp = ?'),
      setClaim: db.prepare(
        'INSERT INTO claims(group_id, tp, member_id) VALUES (?, ?, ?) ON CONFLICT(group_id, tp) DO UPDATE SET member_id = excluded.member_id',
      ),
      releaseClaim: db.prepare('DELETE FROM claims WHERE group_id = ? AND tp = ? AND member_id = ?'),
    };
  }

  get settings(): Readonly<Required<EmbeddedBusOptions>> {
    return this.options;
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    this.assertOpen();
    if (!TOPIC_NAME.test(name)) {
      throw new Error(`createTopic: invalid topic name ${JSON.stringify(name)} (1–249 characters of A–Z a–z 0–9 . _ -)`);
    }
    const n = config.partitions;
    if (!Number.isInteger(n) || n < 1 || n > 10_000) {
      throw new Error(`createTopic ${name}: partitions must be an integer in 1..10000, got ${n}`);
    }
    this.db
      .transaction(() => {
        const existing = this.stmts.topic.get(name);
        if (existing) {
          if (existing.partitions < n) {
            throw new Error(
              `createTopic ${name}: the topic exists with ${existing.partitions} partitions, fewer than the ${n} asked for`,
            );
          }
          return;
        }
        this.stmts.insertTopic.run(name, n, Date.now());
        for (let p = 0; p < n; p++) this.stmts.insertPartition.run(name, p);
      })
      .immediate();
  }

  async listTopics(): Promise<TopicInfo[]> {
    this.assertOpen();
    return this.stmts.allTopics.all().map((t) => {
      const meta = this.topicMeta(t.name);
      return {
        name: t.name,
        partitions: t.partitions,
        endOffsets: meta.tps.map((tp) => this.stmts.nextOffset.get(tp)!.next_offset),
      };
    });
  }

  async produce(topic: string, records: ProduceRecord[]): Promise<RecordPosition[]> {
    this.assertOpen();
    const positions = this.db.transaction(() => this.produceInTx(topic, records)).immediate();
    this.wake();
    return positions;
  }

  async produceAndCommit(groupId: string, outputs: TopicRecords[], consumed: RecordPosition[]): Promise<void> {
    this.assertOpen();
    const marks = consumed.map((pos) => ({ tp: this.tpOf(pos.topic, pos.partition), offset: pos.offset }));
    this.db
      .transaction(() => {
        for (const out of outputs) this.produceInTx(out.topic, out.records);
        for (const m of marks) {
          const claim = this.stmts.claim.get(groupId, m.tp);
          const local = this.owners.get(`${groupId}\0${m.tp}`);
          if (claim && claim.member_id !== local?.member.id && this.memberAlive(claim.member_id)) {
            throw new Error(
              `produceAndCommit: partition ${m.tp} of group ${groupId} now belongs to another consumer; nothing was written`,
            );
          }
          this.markDoneInTx(groupId, m.tp, m.offset);
        }
      })
      .immediate();
    for (const m of marks) this.owners.get(`${groupId}\0${m.tp}`)?.markDoneLocally(m.offset);
    this.wake();
  }

  async seek(groupId: string, topic: string, position: StartPosition): Promise<void> {
    this.assertOpen();
    const meta = this.topicMeta(topic);
    if (position.kind === 'offset' && (position.partition < 0 || position.partition >= meta.partitions)) {
      throw new Error(`seek ${topic}: partition ${position.partition} is out of range 0..${meta.partitions - 1}`);
    }
    if (position.kind === 'committed') return;
    const targets = new Map<number, number>();
    this.db
      .transaction(() => {
        meta.tps.forEach((tp, partition) => {
          let target: number;
          const end = this.stmts.nextOffset.get(tp)!.next_offset;
          if (position.kind === 'beginning') target = this.stmts.firstOffset.get(tp)?.off ?? end;
          else if (position.kind === 'end') target = end;
          else if (position.kind === 'timestamp') target = this.stmts.firstAtTime.get(tp, position.timestamp)?.off ?? end;
          else if (partition === position.partition) target = Math.max(0, Math.min(position.offset, end));
          else return;
          this.stmts.setCommitted.run(groupId, tp, target);
          this.stmts.deleteDoneAll.run(groupId, tp);
          targets.set(tp, target);
        });
      })
      .immediate();
    for (const [tp, target] of targets) this.owners.get(`${groupId}\0${tp}`)?.reset(target);
    this.wake();
  }

  async committed(groupId: string, topic: string): Promise<number[]> {
    this.assertOpen();
    return this.topicMeta(topic).tps.map((tp) => this.stmts.committed.get(groupId, tp)?.committed ?? -1);
  }

  consume(options: ConsumeOptions): Observable<ConsumedRecord> {
    return new Observable<ConsumedRecord>((subscriber) => {
      if (this.closed) {
        subscriber.error(new Error(`consume: the bus ${this.url} is closed`));
        return;
      }
      const member = new GroupMember(this, options, subscriber);
      this.members.add(member);
      member.start();
      return () => {
        member.leave();
      };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const deadline = Date.now() + this.options.drainTimeoutMs;
    const members = [...this.members];
    for (const m of members) m.stopFetching();
    while (members.some((m) => m.inFlight > 0) && Date.now() < deadline) await sleep(5);
    for (const m of members) m.finish();
    this.closed = true;
    this.wake();
    this.db.close();
  }

  // ---- internals shared with GroupMember ----

  assertOpen(): void {
    if (this.closed) throw new Error(`the bus ${this.url} is closed`);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  removeMember(member: GroupMember): void {
    this.members.delete(member);
  }

  topicMeta(topic: string): TopicMeta {
    const cached = this.topicCache.get(topic);
    if (cached) return cached;
    const row = this.stmts.topic.get(topic);
    if (!row) throw new Error(`topic ${JSON.stringify(topic)} does not exist on ${this.url} (create it first: dice topics create)`);
    const tps = this.stmts.topicTps.all(topic).map((r) => r.tp);
    const meta = { name: topic, partitions: row.partitions, tps };
    this.topicCache.set(topic, meta);
    return meta;
  }

  tpOf(topic: string, partition: number): number {
    const meta = this.topicMeta(topic);
    if (!Number.isInteger(partition) || partition < 0 || partition >= meta.partitions) {
      throw new Error(`topic ${topic}: partition ${partition} is out of range 0..${meta.partitions - 1}`);
    }
    return meta.tps[partition];
  }

  private produceInTx(topic: string, records: ProduceRecord[]): RecordPosition[] {
    const meta = this.topicMeta(topic);
    const next = new Map<number, number>();
    const now = Date.now();
    const positions: RecordPosition[] = [];
    for (const [i, r] of records.entries()) {
      if (!(r.value instanceof Uint8Array)) throw new Error(`produce ${topic}: record ${i}: value must be a Uint8Array`);
      let partition: number;
      if (r.partition !== undefined) partition = r.partition;
      else if (r.key !== null && r.key !== undefined) partition = partitionForKey(r.key, meta.partitions);
      else {
        const rr = this.roundRobin.get(topic) ?? 0;
        this.roundRobin.set(topic, rr + 1);
        partition = rr % meta.partitions;
      }
      const tp = this.tpOf(topic, partition);
      let offset = next.get(tp);
      if (offset === undefined) offset = this.stmts.nextOffset.get(tp)!.next_offset;
      const headers = r.headers && Object.keys(r.headers).length > 0 ? JSON.stringify(r.headers) : null;
      this.stmts.insertRecord.run(tp, offset, r.timestamp ?? now, r.key ?? null, headers, r.value);
      next.set(tp, offset + 1);
      positions.push({ topic, partition, offset });
    }
    for (const [tp, offset] of next) this.stmts.setNextOffset.run(offset, tp);
    return positions;
  }

  /** Marks one record done for a group; advances the committed offset over the contiguous done prefix. */
  markDoneInTx(groupId: string, tp: number, offset: number): void {
    const committed = this.stmts.committed.get(groupId, tp)?.committed ?? 0;
    if (offset < committed) return;
    if (offset > committed) {
      this.stmts.insertDone.run(groupId, tp, offset);
      return;
    }
    let c = offset + 1;
    for (const { off } of this.stmts.doneFrom.iterate(groupId, tp, c)) {
      if (off !== c) break;
      c++;
    }
    this.stmts.deleteDoneBelow.run(groupId, tp, c);
    this.stmts.setCommitted.run(groupId, tp, c);
  }

  /** Commits a batch of records of one member in one transaction (claims permitting). */
  commitBatch(member: GroupMember, marks: Array<{ state: PartitionState; offset: number }>): void {
    this.db
      .transaction(() => {
        for (const { state, offset } of marks) {
          const claim = this.stmts.claim.get(member.groupId, state.tp);
          // A partition handed to someone else meanwhile: its records will be redelivered there.
          if (claim && claim.member_id !== member.id) continue;
          this.markDoneInTx(member.groupId, state.tp, offset);
        }
      })
      .immediate();
  }

  memberAlive(memberId: string, row?: { pid: number; host: string; heartbeat_ms: number }): boolean {
    if (liveMembers.has(memberId)) return true;
    const r =
      row ?? (this.db.prepare('SELECT pid, host, heartbeat_ms FROM members WHERE member_id = ?').get(memberId) as
        | { pid: number; host: string; heartbeat_ms: number }
        | undefined);
    if (!r) return false;
    if (Date.now() - r.heartbeat_ms > this.options.sessionTimeoutMs) return false;
    if (r.host === this.host) {
      if (r.pid === process.pid) return false; // not one of ours: a leftover of an earlier process with our pid
      try {
        process.kill(r.pid, 0);
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    return true;
  }

  get statements() {
    return this.stmts;
  }

  /** Resolves when a local produce/commit happens or after `ms`. */
  waitForChange(ms: number): Promise<void> {
    return new Promise((res) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        res();
      }
      this.waiters.push(done);
    });
  }

  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** What a member knows about one partition it holds. */
class PartitionState {
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

class GroupMember {
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
    private readonly bus: EmbeddedBus,
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

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
