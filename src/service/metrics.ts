import type { Bus } from '../../topics/bus.ts';
import { metricsTopic, type MetricEvent, type MetricValue } from '../../topics/metrics.ts';
import { topicName } from '../../topics/registry.ts';
import { splitEventName } from '../stages/metric-events.ts';
import type { StageEvent } from '../stages/stage.ts';

/**
 * Emits metric events from every stage: produced to the run's metrics topic (where `dice monitor`
 * and the archive read them) and handed to in-process listeners (`--monitor`). Events are buffered
 * briefly and produced in batches so metrics never slow a stage down.
 */
export class MetricsEmitter {
  private buffer: MetricEvent[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private readonly listeners: Array<(e: MetricEvent) => void> = [];
  private readonly topic: string;

  constructor(
    private readonly bus: Bus,
    namespace: string | undefined,
  ) {
    this.topic = topicName(namespace, 'metrics');
  }

  onEvent(listener: (e: MetricEvent) => void): void {
    this.listeners.push(listener);
  }

  emit(stage: string, type: string, round: number | null, fields: Record<string, MetricValue> = {}): MetricEvent {
    const event: MetricEvent = { ...fields, stage, type, time: Date.now(), round };
    for (const l of this.listeners) l(event);
    this.buffer.push(event);
    if (!this.timer) this.timer = setTimeout(() => void this.flush(), 200);
    return event;
  }

  /** A stage's typed event (src/stages/metric-events.ts), as its descriptor projected it. */
  stageEvent(event: StageEvent, round: number | null): MetricEvent {
    const { stage, type } = splitEventName(event.name);
    return this.emit(stage, type, round, event.fields as Record<string, MetricValue>);
  }

  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const events = this.buffer;
    this.buffer = [];
    if (events.length > 0) {
      this.flushing = this.flushing.then(() =>
        this.bus.produce(this.topic, events.map((e) => ({ key: e.stage, value: metricsTopic.encode(e) }))).then(() => undefined),
      );
    }
    await this.flushing;
  }
}
