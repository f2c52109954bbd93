import { binary, float64, int32, utf8 } from './codec.ts';
import { schemaOf } from './common.ts';
import { arrowContract } from './contract.ts';

/** A record that failed validation, kept with the reason. Key: the source topic. */
export interface DeadLetter {
  sourceTopic: string;
  partition: number;
  offset: number;
  /** The original record's key. */
  key: string | null;
  /** Why it was rejected (the TopicValidationError message: topic, field, problem). */
  error: string;
  /** The original value bytes, untouched. */
  value: Uint8Array;
  /** When it was dead-lettered (ms since epoch). */
  time: number;
}

export const deadLetterSchema = schemaOf([
  utf8('sourceTopic'),
  int32('partition'),
  float64('offset'),
  utf8('key', true),
  utf8('error'),
  binary('value'),
  float64('time'),
]);

export const deadLetterTopic = arrowContract<DeadLetter>({
  name: 'dead-letter',
  schema: deadLetterSchema,
  defaultPartitions: 1,
  keyOf: (d) => d.sourceTopic,
  check(d, fail) {
    if (!Number.isInteger(d.offset) || d.offset < -1) fail('offset', `must be an integer ≥ -1, got ${d.offset}`);
  },
});
