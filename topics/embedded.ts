import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
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
import { openBusDatabase } from './embedded-file.ts';
import { GroupMember, liveMembers, sleep, type MemberHost, type PartitionState } from './embedded-member.ts';
import { prepareStore, type EmbeddedBusOptions, type StoreStatements, type TopicMeta } from './embedded-store.ts';
import { partitionForKey } from './partitioner.ts';
import { checkTopicName } from './topic-name.ts';

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

export type { EmbeddedBusOptions } from './embedded-store.ts';


export async function openEmbeddedBus(path: string, options: EmbeddedBusOptions = {}): Promise<EmbeddedBus> {
  return new EmbeddedBus(path, options);
}

export class EmbeddedBus implements Bus, MemberHost {
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
  private readonly stmts: StoreStatements;
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
    this.stmts = prepareStore(this.db);
  }

  get settings(): Readonly<Required<EmbeddedBusOptions>> {
    return this.options;
  }

  async createTopic(name: string, config: TopicConfig): Promise<void> {
    this.assertOpen();
    checkTopicName(name);
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
