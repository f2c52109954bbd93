import type { OffsetTracker } from './offset-tracker.ts';

/** What a partition state tells its consumer: records done, and that a commit is due. */
export interface PartitionOwner {
  recordsDone(n: number): void;
  requestFlush(): Promise<void>;
}

/** A Kafka group consumer's state of one assigned partition: position, done offsets, last commit. */
export class KafkaPartitionState {
  tracker: OffsetTracker | null = null;
  /** The next offset not yet looked at (−1 until known). */
  position = -1;
  /** The offset last committed (−1 if none known). */
  lastCommitted = -1;
  revoked = false;

  constructor(
    readonly owner: PartitionOwner,
    readonly topic: string,
    readonly partition: number,
  ) {}

  /** The offset to commit now. */
  target(): number {
    if (!this.tracker) return this.position;
    if (this.tracker.inFlight > 0) return this.tracker.committable;
    return Math.max(this.tracker.next, this.position);
  }

  /**
   * The offset a transaction that consumed `offsets` may commit: after the highest of them, but not
   * past an earlier record still in flight (null when that would not move the committed offset).
   */
  transactionalCommitOffset(offsets: number[]): number | null {
    const done = new Set(offsets);
    const max = Math.max(...offsets);
    let target = max + 1;
    if (this.tracker) {
      for (let o = this.tracker.committable; o <= max; o++) {
        if (!done.has(o) && this.tracker.isOutstanding(o)) {
          target = o;
          break;
        }
      }
    }
    return target > this.lastCommitted ? target : null;
  }

  doneByTransaction(offset: number): void {
    if (this.revoked || !this.tracker?.isOutstanding(offset)) return;
    this.tracker.markDone(offset);
    this.owner.recordsDone(1);
  }

  committedByTransaction(offset: number): void {
    this.lastCommitted = Math.max(this.lastCommitted, offset);
    if (this.target() > this.lastCommitted) void this.owner.requestFlush();
  }
}
