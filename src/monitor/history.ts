import type { MonitorEvent } from './events.ts';

/** A fixed-capacity ring that keeps the newest items. */
class Ring<T> {
  private readonly items: T[] = [];
  private start = 0;
  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`history capacity must be a positive integer, got ${capacity}`);
  }
  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item);
    else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }
  toArray(): T[] {
    return [...this.items.slice(this.start), ...this.items.slice(0, this.start)];
  }
  get size(): number {
    return this.items.length;
  }
}

/** Event types kept in their own ring so a flood of per-step metrics cannot evict them. */
const MILESTONE_TYPES = new Set(['checkpoint', 'eval', 'evaluation', 'round', 'run']);

export function isMilestone(event: MonitorEvent): boolean {
  return MILESTONE_TYPES.has(event.type) || event.stage === 'checkpoint' || event.stage === 'eval';
}

/** The monitor's own periodic observations of the bus (throughput, lag). */
export const BUS_STAGE = 'bus';

export interface HistoryLimits {
  /** Most recent stage events kept (default 20000). */
  maxEvents?: number;
  /** Most recent milestones (checkpoints, evaluations, round changes) kept (default 2000). */
  maxMilestones?: number;
  /** Most recent bus observations (throughput, lag polls) kept (default 3600). */
  maxBusObservations?: number;
}

/**
 * The bounded history a late-joining page receives: the newest stage events, milestones and bus
 * observations, each bounded on its own so one kind cannot evict another, merged back into arrival
 * order by sequence number.
 */
export class EventHistory {
  private readonly rings: { events: Ring<MonitorEvent>; milestones: Ring<MonitorEvent>; bus: Ring<MonitorEvent> };
  private nextSeq = 1;
  private dropped = 0;

  constructor(limits: HistoryLimits = {}) {
    this.rings = {
      events: new Ring(limits.maxEvents ?? 20_000),
      milestones: new Ring(limits.maxMilestones ?? 2_000),
      bus: new Ring(limits.maxBusObservations ?? 3_600),
    };
  }

  /** Stamps the event with the next sequence number and keeps it. */
  add(event: MonitorEvent): MonitorEvent {
    const stamped = { ...event, seq: this.nextSeq++ };
    const ring = isMilestone(stamped) ? this.rings.milestones : stamped.stage === BUS_STAGE ? this.rings.bus : this.rings.events;
    if (ring.size === ring.capacity) this.dropped++;
    ring.push(stamped);
    return stamped;
  }

  /** Everything kept, oldest first. */
  snapshot(): MonitorEvent[] {
    const all = [...this.rings.events.toArray(), ...this.rings.milestones.toArray(), ...this.rings.bus.toArray()];
    return all.sort((a, b) => (a.seq as number) - (b.seq as number));
  }

  get size(): number {
    return this.rings.events.size + this.rings.milestones.size + this.rings.bus.size;
  }

  /** Events evicted so far to keep the bound. */
  get evicted(): number {
    return this.dropped;
  }

  /** Sequence number of the newest event (0 when empty). */
  get lastSeq(): number {
    return this.nextSeq - 1;
  }
}
