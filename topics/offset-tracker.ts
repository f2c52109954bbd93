/**
 * Per-partition bookkeeping of delivered-but-not-committed records, shared by both buses.
 *
 * Records are delivered in increasing offset order (possibly with gaps: the embedded bus skips
 * records already done by an earlier produceAndCommit), but processing may finish out of order.
 * The committable offset is the first offset that is not yet done: everything below it is either
 * done or was never delivered because it did not need to be. It only ever moves forward.
 */
export class OffsetTracker {
  /** Delivered offsets in delivery (= increasing) order; entries before `head` are done. */
  private readonly pending: number[] = [];
  private head = 0;
  private readonly done = new Set<number>();
  private nextOffset: number;

  /** `start`: the offset the consumer starts reading from (the group's committed offset). */
  constructor(start: number) {
    this.nextOffset = start;
  }

  /** Records a delivered offset; offsets must increase. */
  deliver(offset: number): void {
    if (offset < this.nextOffset) {
      throw new Error(`offset tracker: delivered offset ${offset} is below the next expected offset ${this.nextOffset}`);
    }
    this.pending.push(offset);
    this.nextOffset = offset + 1;
  }

  /**
   * Marks a delivered offset done. Returns the new committable offset when it advanced, else null
   * (an earlier offset is still in flight, or the offset was already done or never delivered).
   */
  markDone(offset: number): number | null {
    const before = this.committable;
    if (offset < before || this.done.has(offset) || offset >= this.nextOffset) return null;
    if (!this.isPending(offset)) return null;
    this.done.add(offset);
    while (this.head < this.pending.length && this.done.has(this.pending[this.head])) {
      this.done.delete(this.pending[this.head]);
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.pending.length) {
      this.pending.splice(0, this.head);
      this.head = 0;
    }
    const after = this.committable;
    return after > before ? after : null;
  }

  /** First offset not yet done (the offset to commit). */
  get committable(): number {
    return this.head < this.pending.length ? this.pending[this.head] : this.nextOffset;
  }

  /** True when `offset` was delivered and is not yet done (so marking it done changes something). */
  isOutstanding(offset: number): boolean {
    return offset >= this.committable && offset < this.nextOffset && !this.done.has(offset) && this.isPending(offset);
  }

  /** Delivered records not yet done. */
  get inFlight(): number {
    return this.pending.length - this.head - this.done.size;
  }

  /** The offset the next delivered record must be at or above. */
  get next(): number {
    return this.nextOffset;
  }

  private isPending(offset: number): boolean {
    // Binary search over the live part of `pending` (sorted ascending).
    let lo = this.head;
    let hi = this.pending.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.pending[mid];
      if (v === offset) return true;
      if (v < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return false;
  }
}
