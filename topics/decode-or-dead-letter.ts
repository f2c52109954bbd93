import { concatMap, from, of, type Observable, type OperatorFunction } from 'rxjs';
import type { Bus, ConsumedRecord } from './bus.ts';
import type { Limits } from './codec.ts';
import type { TopicContract } from './contract.ts';
import { deadLetterRecord } from './dead-letter-record.ts';

export interface Decoded<T> {
  value: T;
  /** The consumed record: commit it once `value` is fully processed. */
  record: ConsumedRecord;
}

export interface DecodeOrDeadLetterOptions {
  /** The consumer group reading the records (dead-lettering commits the bad record in it). */
  groupId: string;
  /** Full name of the dead-letter topic (registry: topicName(namespace, 'dead-letter')). */
  deadLetterTopic: string;
  limits?: Partial<Limits>;
  /** Called for each dead-lettered record (logging, metrics). */
  onDeadLetter?(record: ConsumedRecord, error: Error): void;
}

/**
 * Decodes and validates consumed records against a topic contract. A record that fails goes to the
 * dead-letter topic with its reason, and is committed in the same produceAndCommit (so it is never
 * retried); the stream goes on with the next record. Order is kept.
 *
 *   records:  --a--X--b--|        (X is malformed)
 *   decoded:  --a-----b--|        dead-letter: --X'--
 *
 * Example: bus.consume({ groupId, topics: [t] }).pipe(decodeOrDeadLetter(bus, samplesTopic, { groupId, deadLetterTopic }))
 */
export function decodeOrDeadLetter<T>(
  bus: Bus,
  contract: TopicContract<T>,
  options: DecodeOrDeadLetterOptions,
): OperatorFunction<ConsumedRecord, Decoded<T>> {
  return (source: Observable<ConsumedRecord>) =>
    source.pipe(
      concatMap((record): Observable<Decoded<T> | null> => {
        let value: T;
        try {
          value = contract.decode(record.value, options.limits);
        } catch (err) {
          const error = err instanceof Error ? err : new Error(String(err));
          options.onDeadLetter?.(record, error);
          const letter = deadLetterRecord(record, error);
          return from(
            bus
              .produceAndCommit(options.groupId, [{ topic: options.deadLetterTopic, records: [letter] }], [record])
              .then(() => record.commit())
              .then(() => null),
          );
        }
        return of({ value, record });
      }),
      concatMap((d) => (d === null ? [] : [d])),
    );
}
