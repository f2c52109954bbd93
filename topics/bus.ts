import type { Observable } from 'rxjs';

/**
 * The one interface every stage talks through. Two implementations: embedded.ts (SQLite, default)
 * and kafka.ts (kafkajs). One conformance suite (test/topics/bus-conformance.ts) runs against both.
 *
 * Delivery is at-least-once: a consumed record is committed only after its processing is done
 * (`record.commit()`), and a group resumes from its committed offsets. Commits may come out of
 * order; the committed offset of a partition only advances past a contiguous run of done records.
 */

export type Headers = Record<string, string>;

export interface ProduceRecord {
  key: string | null;
  value: Uint8Array;
  headers?: Headers;
  /** Explicit partition; otherwise chosen by a stable hash of the key (round-robin when key is null). */
  partition?: number;
  /** Milliseconds since epoch; defaults to now. */
  timestamp?: number;
}

export interface RecordPosition {
  topic: string;
  partition: number;
  offset: number;
}

export interface BusRecord extends RecordPosition {
  key: string | null;
  value: Uint8Array;
  headers: Headers;
  timestamp: number;
}

/** A record handed to a consumer: commit it once it is fully processed. */
export interface ConsumedRecord extends BusRecord {
  /** Idempotent: committing twice, or after produceAndCommit covered the record, changes nothing. */
  commit(): Promise<void>;
}

export type StartPosition =
  | { kind: 'committed' } // the group's committed offsets; the earliest offset where none is committed
  | { kind: 'beginning' }
  | { kind: 'end' }
  | { kind: 'offset'; partition: number; offset: number }
  | { kind: 'timestamp'; timestamp: number };

export interface ConsumeOptions {
  groupId: string;
  topics: string[];
  /** Where to start reading (default: committed). Seeking moves the group's committed offsets. */
  from?: StartPosition;
  /**
   * Replay mode: read up to the end of each partition as it is when consumption starts, then
   * complete the observable (after every delivered record has been committed or the subscriber
   * unsubscribed).
   */
  untilEnd?: boolean;
  /**
   * Backpressure: at most this many records delivered but not yet committed; the consumer pauses
   * fetching while the limit is reached (RxJS has no backpressure of its own). Default 1000.
   */
  maxInFlight?: number;
  /**
   * With untilEnd: called once when every record up to the end has been delivered (commits may
   * still be pending). Stages that take a whole range and commit it together with their outputs wait
   * for this, since the observable itself completes only after those commits.
   */
  onEndReached?: () => void;
}

export interface TopicConfig {
  partitions: number;
}

export interface TopicInfo {
  name: string;
  partitions: number;
  /** Next offset to be written, per partition (the "high watermark"). */
  endOffsets: number[];
}

export interface TopicRecords {
  topic: string;
  records: ProduceRecord[];
}

export interface Bus {
  /** A human-readable address, e.g. `embedded:/path/bus.db` or `kafka://127.0.0.1:9092`. */
  readonly url: string;
  /** Creates the topic if it does not exist; an existing topic with fewer partitions is an error. */
  createTopic(name: string, config: TopicConfig): Promise<void>;
  listTopics(): Promise<TopicInfo[]>;
  produce(topic: string, records: ProduceRecord[]): Promise<RecordPosition[]>;
  /**
   * Consumes within a consumer group. Unsubscribing (or the bus closing) stops fetching; records
   * already delivered but not committed are redelivered to the group later.
   */
  consume(options: ConsumeOptions): Observable<ConsumedRecord>;
  /**
   * Consume-transform-produce as one unit: writes `outputs` and commits the `consumed` positions for
   * `groupId` atomically (embedded: one SQLite transaction; kafka: a producer transaction with
   * sendOffsets). Either all of it is visible afterwards or none of it: e.g. a record for a partition
   * out of range makes it reject with nothing written and nothing committed. Consumed records it
   * covers count as committed for their consumer (in-flight slots freed; their commit() is a no-op).
   */
  produceAndCommit(groupId: string, outputs: TopicRecords[], consumed: RecordPosition[]): Promise<void>;
  /** Moves a group's committed offsets (for replay). */
  seek(groupId: string, topic: string, position: StartPosition): Promise<void>;
  /**
   * Committed offsets of a group on a topic, per partition (-1 where none). As in Kafka, the
   * committed offset is the offset of the next record to read (last done + 1).
   */
  committed(groupId: string, topic: string): Promise<number[]>;
  /**
   * Drains in-flight work of active consumers (stops fetching, waits for their commits), completes
   * their observables, then releases resources.
   */
  close(): Promise<void>;
}
