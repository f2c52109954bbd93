import type { Subscription } from 'rxjs';
import type { Bus, BusRecord } from '../../topics/bus.ts';
import { groupLag } from '../service/stage-runner.ts';
import { BUS_STAGE } from './history.ts';
import type { MonitorEvent } from './events.ts';

export interface WatchedTopic {
  topic: string;
  /** Turns a record of this topic into an event. */
  toEvent(record: BusRecord): MonitorEvent;
}

export interface LagGroup {
  groupId: string;
  topics: string[];
}

export interface BusWatchOptions {
  bus: Bus;
  watched: WatchedTopic[];
  /** Consumer group prefix; each watched topic gets `${groupId}.${topic}` (read from the beginning). */
  groupId: string;
  /** Topic names shown in throughput observations (a namespace's topics); all when omitted. */
  topicFilter?: (name: string) => boolean;
  lagGroups?: LagGroup[];
  /** How often to look for watched topics and observe offsets/lag; 0 turns observations off. */
  pollIntervalMs: number;
  onEvent(event: MonitorEvent): void;
  onError(err: unknown): void;
}

/**
 * Reads the watched topics from their beginning and follows them live, and periodically observes the
 * bus itself: per-topic write rate (records/s from end offsets) and consumer lag of known groups.
 * A watched topic that does not exist yet (the monitor started before the run) is picked up once it
 * appears. Reading commits as it goes so the consumer's in-flight bound never stalls it.
 */
export function watchBus(options: BusWatchOptions): { stop(): void } {
  const { bus, watched } = options;
  const subscriptions = new Map<string, Subscription>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastEnds: { time: number; ends: Map<string, number> } | undefined;

  const follow = (w: WatchedTopic) => {
    const sub = bus
      .consume({ groupId: `${options.groupId}.${w.topic}`, topics: [w.topic], from: { kind: 'beginning' } })
      .subscribe({
        next: (record) => {
          options.onEvent(w.toEvent(record));
          record.commit().catch(options.onError);
        },
        error: (err) => {
          subscriptions.delete(w.topic); // retried by the poll loop
          options.onError(err);
          if (!stopped && timer === undefined) timer = setTimeout(loop, 1000);
        },
      });
    subscriptions.set(w.topic, sub);
  };

  const observe = async () => {
    const infos = await bus.listTopics();
    const existing = new Set(infos.map((t) => t.name));
    for (const w of watched) if (!subscriptions.has(w.topic) && existing.has(w.topic) && !stopped) follow(w);
    if (options.pollIntervalMs <= 0 || stopped) return;

    const now = Date.now();
    const ends = new Map<string, number>();
    for (const t of infos) {
      if (options.topicFilter && !options.topicFilter(t.name)) continue;
      ends.set(t.name, t.endOffsets.reduce((a, b) => a + b, 0));
    }
    if (lastEnds && now > lastEnds.time) {
      const seconds = (now - lastEnds.time) / 1000;
      const rates: Record<string, number> = {};
      // Topics never written to are left out: a chart of a dozen flat zeros hides the ones that move.
      for (const [name, end] of ends) if (end > 0) rates[name] = Math.max(0, end - (lastEnds.ends.get(name) ?? 0)) / seconds;
      options.onEvent({ stage: BUS_STAGE, type: 'throughput', time: now, seconds, rates, ends: Object.fromEntries(ends) });
    }
    lastEnds = { time: now, ends };

    if (options.lagGroups?.length) {
      const endsByTopic = new Map(infos.map((t) => [t.name, t.endOffsets]));
      const lag: Record<string, number> = {};
      for (const g of options.lagGroups) {
        for (const topic of g.topics) {
          const topicEnds = endsByTopic.get(topic);
          if (!topicEnds) continue;
          lag[`${g.groupId}/${topic}`] = groupLag(topicEnds, await bus.committed(g.groupId, topic));
        }
      }
      options.onEvent({ stage: BUS_STAGE, type: 'lag', time: now, lag });
    }
  };

  const loop = async () => {
    timer = undefined;
    if (stopped) return;
    try {
      await observe();
    } catch (err) {
      if (!stopped) options.onError(err);
    }
    // With observations off, keep polling only until every watched topic is followed.
    const needed = options.pollIntervalMs > 0 || subscriptions.size < watched.length;
    if (!stopped && needed && timer === undefined) timer = setTimeout(loop, options.pollIntervalMs > 0 ? options.pollIntervalMs : 1000);
  };
  void loop();

  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const sub of subscriptions.values()) sub.unsubscribe();
      subscriptions.clear();
    },
  };
}
