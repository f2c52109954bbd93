import type { BusRecord, ProduceRecord } from './bus.ts';
import { wellFormed } from './codec.ts';
import { deadLetterTopic } from './dead-letter.ts';

/** The dead-letter produce record for a bad record: keyed by its source topic. */
export function deadLetterRecord(record: Pick<BusRecord, 'topic' | 'partition' | 'offset' | 'key' | 'value'>, error: Error | string): ProduceRecord {
  const message = wellFormed(typeof error === 'string' ? error : error.message);
  return {
    key: record.topic,
    value: deadLetterTopic.encode({
      sourceTopic: record.topic,
      partition: record.partition,
      offset: record.offset,
      key: record.key === null ? null : wellFormed(record.key),
      error: message.length > 65536 ? `${message.slice(0, 65536)}…` : message,
      value: record.value,
      time: Date.now(),
    }),
    headers: { 'dice-error': message.slice(0, 512) },
  };
}
