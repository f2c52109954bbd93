import { concatMap, filter, lastValueFrom, map, takeUntil, tap, type Observable, type OperatorFunction } from 'rxjs';
import type { Bus, ConsumedRecord, RecordPosition, TopicRecords } from '../../topics/bus.ts';
import type { TopicContract } from '../../topics/contract.ts';
import { decodeOrDeadLetter, type Decoded } from '../../topics/decode-or-dead-letter.ts';
import { deadLetterRecord } from '../../topics/dead-letter-record.ts';
import type { Rejected } from '../../operators/ports.ts';

/**
 * Runs operators over bus topics with the delivery guarantees of the design: a stage's outputs and
 * the commit of the inputs they came from are written together (`produceAndCommit`: exactly-once
 * on the embedded bus, a transaction on Kafka), bad records go to dead-letter, and a restarted stage
 * resumes from its group's committed offsets.
 */

export interface StageInput<In> {
  topic: string;
  contract: TopicContract<In>;
  deadLetterTopic: string;
}

export interface PerRecordStage<In, Out> {
  bus: Bus;
  groupId: string;
  input: StageInput<In>;
  /** Records this stage does not handle (another round's) are committed without output. */
  accept?: (value: In) => boolean;
  keyOfInput: (value: In) => string;
  keyOfOutput: (value: Out) => string;
  /** The operator; `drop(key)` commits an input it decided not to answer (e.g. a stale group). */
  operator: (drop: (key: string) => void) => OperatorFunction<In, Out | Rejected>;
  outputs: (value: Out) => TopicRecords[];
  /** Read to the current end and complete (a run), or forever (a service). */
  untilEnd: boolean;
  onOutput?: (value: Out, progress: StageProgress) => void;
  onRejected?: (rejected: Rejected) => void;
  /** A service stops taking records when this emits; work already taken is finished and committed. */
  stop$?: Observable<unknown>;
}

/** What a stage knows of its progress when it answers a record (for its metric events). */
export interface StageProgress {
  /**
   * Records of the input topic not yet committed by the stage's group: read from the bus at most
   * every LAG_SAMPLE_MS, and between readings less the records the stage has committed since.
   */
  lag: number;
}

/** Consumer lag is re-read at most this often: two bus calls, cheap, but not worth doing per record. */
export const LAG_SAMPLE_MS = 500;

/** Records written but not committed by a group, summed over partitions (no commit yet: all of it). */
export function groupLag(endOffsets: number[], committed: number[]): number {
  return endOffsets.reduce((sum, end, p) => sum + Math.max(0, end - Math.max(0, committed[p] ?? -1)), 0);
}

/** The group's lag on a topic (see StageProgress.lag); `committed()` counts each record the stage commits. */
function lagTracker(bus: Bus, groupId: string, topic: string): { committed(): void; lag(): Promise<number> } {
  let read = 0;
  let since = 0;
  let readAt = -Infinity;
  return {
    committed: () => void since++,
    lag: async () => {
      if (performance.now() - readAt >= LAG_SAMPLE_MS) {
        readAt = performance.now();
        since = 0;
        const [topics, committed] = await Promise.all([bus.listTopics(), bus.committed(groupId, topic)]);
        read = groupLag(topics.find((t) => t.name === topic)?.endOffsets ?? [], committed);
      }
      return Math.max(0, read - since);
    },
  };
}

export interface StageCounts {
  outputs: number;
  skipped: number;
  rejected: number;
  dropped: number;
}

/** A stage whose outputs each answer one input record, matched by key. */
export async function runPerRecordStage<In, Out>(stage: PerRecordStage<In, Out>): Promise<StageCounts> {
  const { bus, groupId, input } = stage;
  const counts: StageCounts = { outputs: 0, skipped: 0, rejected: 0, dropped: 0 };
  const lag = lagTracker(bus, groupId, input.topic);
  const pending = new Map<string, ConsumedRecord>();
  const settle = async (key: string, outputs: TopicRecords[]) => {
    const record = pending.get(key);
    if (!record) throw new Error(`stage ${groupId}: output for key ${key} matches no consumed input`);
    pending.delete(key);
    await bus.produceAndCommit(groupId, outputs, [record]);
    await record.commit();
    lag.committed();
  };
  const failures: Error[] = [];
  const drop = (key: string) => {
    counts.dropped++;
    settle(key, []).catch((err: Error) => failures.push(err));
  };
  const source = bus.consume({ groupId, topics: [input.topic], untilEnd: stage.untilEnd }).pipe(
    stage.stop$ ? takeUntil(stage.stop$) : (s) => s,
    decodeOrDeadLetter(bus, input.contract, { groupId, deadLetterTopic: input.deadLetterTopic }),
    concatMap(async (d: Decoded<In>) => {
      if (stage.accept && !stage.accept(d.value)) {
        counts.skipped++;
        await d.record.commit();
        lag.committed();
        return null;
      }
      const key = stage.keyOfInput(d.value);
      if (pending.has(key)) {
        // at-least-once redelivery of a key still in flight: the first one answers both
        counts.skipped++;
        await d.record.commit();
        lag.committed();
        return null;
      }
      pending.set(key, d.record);
      return d.value;
    }),
    filter((v): v is Awaited<In> => v !== null),
    map((v) => v as In),
    stage.operator(drop),
    concatMap(async (out) => {
      if (isRejected(out)) {
        counts.rejected++;
        stage.onRejected?.(out);
        const record = pending.get(out.key)!;
        await settle(out.key, [{ topic: input.deadLetterTopic, records: [deadLetterRecord(record, out.error)] }]);
        return;
      }
      await settle(stage.keyOfOutput(out), stage.outputs(out));
      counts.outputs++;
      if (stage.onOutput) stage.onOutput(out, { lag: await lag.lag() });
    }),
  );
  await lastValueFrom(source, { defaultValue: undefined });
  if (failures.length > 0) throw failures[0];
  return counts;
}

function isRejected(v: unknown): v is Rejected {
  return typeof v === 'object' && v !== null && (v as Rejected).kind === 'rejected';
}

/**
 * Reads (and decodes) what the group has not yet consumed, up to the current end, for a stage that
 * takes the whole range at once and commits it together with its outputs (commitAll). Nothing is
 * committed here; the consumer completes once commitAll has committed every record returned.
 */
export async function readRemaining<T>(bus: Bus, groupId: string, input: StageInput<T>): Promise<Decoded<T>[]> {
  const collected: Decoded<T>[] = [];
  return new Promise((resolvePromise, reject) => {
    // Done when the bus has delivered everything up to the end and each record was decoded or dead-lettered.
    let delivered = 0;
    let settled = 0;
    let endReached = false;
    let resolved = false;
    const check = () => {
      if (resolved || !endReached || settled < delivered) return;
      resolved = true;
      resolvePromise(collected);
    };
    bus
      .consume({ groupId, topics: [input.topic], untilEnd: true, maxInFlight: 1_000_000, onEndReached: () => ((endReached = true), check()) })
      .pipe(
        tap(() => delivered++),
        decodeOrDeadLetter(bus, input.contract, { groupId, deadLetterTopic: input.deadLetterTopic, onDeadLetter: () => settled++ }),
      )
      .subscribe({
        next: (d) => {
          collected.push(d);
          settled++;
          check();
        },
        error: reject,
        complete: () => ((endReached = true), check()),
      });
  });
}

/** Writes outputs and commits every consumed record in one unit (then releases them from the consumer). */
export async function commitAll(bus: Bus, groupId: string, outputs: TopicRecords[], consumed: Decoded<unknown>[]): Promise<void> {
  const positions: RecordPosition[] = consumed.map((d) => ({ topic: d.record.topic, partition: d.record.partition, offset: d.record.offset }));
  await bus.produceAndCommit(groupId, outputs.filter((o) => o.records.length > 0), positions);
  for (const d of consumed) await d.record.commit();
}

/** Every record of a topic from the beginning, decoded, without committing anything (bad records, already dead-lettered by the stage that met them, are skipped). */
export async function readWholeTopic<T>(bus: Bus, topic: string, contract: TopicContract<T>): Promise<T[]> {
  if (!(await bus.listTopics()).some((t) => t.name === topic)) return [];
  const groupId = `read-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
  const values: T[] = [];
  return new Promise((resolvePromise, reject) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      queueMicrotask(() => subscription.unsubscribe());
      resolvePromise(values);
    };
    const subscription = bus
      .consume({ groupId, topics: [topic], from: { kind: 'beginning' }, untilEnd: true, maxInFlight: 1_000_000, onEndReached: finish })
      .subscribe({
        next: (record) => {
          try {
            values.push(contract.decode(record.value));
          } catch {
            // skipped: see above
          }
        },
        error: reject,
        complete: finish,
      });
    if (done) subscription.unsubscribe();
  });
}
