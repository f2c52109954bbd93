import type Database from 'better-sqlite3';

/**
 * The embedded bus's SQLite store: its tables (topics, partitions, records; group offsets, records
 * done ahead of the committed offset, members and their partition claims) and the prepared
 * statements over them.
 */

/** Settings of an embedded bus (see topics/embedded.ts for what they govern). */
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

export interface TopicMeta {
  name: string;
  partitions: number;
  /** tp ids (rowid of `partitions`) indexed by partition number. */
  tps: number[];
}

export interface RecordRow {
  off: number;
  ts: number;
  key: string | null;
  headers: string | null;
  value: Buffer;
}

/** Creates the tables (if new) and prepares the statements. */
export function prepareStore(db: Database.Database) {
db.exec(`
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
return {
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

export type StoreStatements = ReturnType<typeof prepareStore>;
