/**
 * A small at-least-once stage for the Kafka crash and restart tests: consume `input`, write one
 * output record per input record (same key, value prefixed "out:"), then commit the input. Run as a
 * child process (`node --import tsx test/topics/kafka-stage.ts URL INPUT OUTPUT GROUP`) it runs until
 * SIGTERM (graceful: drains and commits) or SIGKILL (crash).
 */
import { mergeMap, Observable, type Subscription } from 'rxjs';
import type { Bus, ConsumedRecord } from '../../topics/bus.ts';
import { openKafkaBus } from '../../topics/kafka.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const STAGE_MAX_IN_FLIGHT = 20;

export function runStage(
  bus: Bus,
  input: string,
  output: string,
  groupId: string,
  onError: (err: unknown) => void = (err) => console.error('stage failed:', err),
): Subscription {
  return bus
    .consume({ groupId, topics: [input], maxInFlight: STAGE_MAX_IN_FLIGHT })
    .pipe(
      mergeMap(async (r: ConsumedRecord) => {
        await bus.produce(output, [{ key: r.key, value: encoder.encode(`out:${decoder.decode(r.value)}`) }]);
        await r.commit();
      }, 8),
    )
    .subscribe({ error: onError });
}

/** The downstream dedupe: keeps the first record of each key (outputs are keyed by input id). */
export function dedupeByKey<T extends { key: string | null }>() {
  return (source: Observable<T>) =>
    new Observable<T>((sub) => {
      const seen = new Set<string | null>();
      return source.subscribe({
        next: (r) => {
          if (seen.has(r.key)) return;
          seen.add(r.key);
          sub.next(r);
        },
        error: (e) => sub.error(e),
        complete: () => sub.complete(),
      });
    });
}

if (process.argv[1]?.endsWith('kafka-stage.ts') && process.argv.length >= 6) {
  const [url, input, output, groupId] = process.argv.slice(2);
  const bus = await openKafkaBus(new URL(url), { sessionTimeoutMs: 3000, heartbeatIntervalMs: 500 });
  // A failed stage exits at once with its reason, so the test says why instead of timing out.
  const sub = runStage(bus, input, output, groupId, (err) => {
    console.error('stage failed:', err);
    process.exit(1);
  });
  process.on('SIGTERM', () => {
    sub.unsubscribe();
    void bus.close().then(() => process.exit(0));
  });
  process.stdout.write('ready\n');
}
