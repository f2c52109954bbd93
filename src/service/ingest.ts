import { basename } from 'node:path';
import type { Bus } from '../../topics/bus.ts';
import type { TopicContract } from '../../topics/contract.ts';
import { deadLetterRecord } from '../../topics/dead-letter-record.ts';
import { readRecordEntries, toJsonLine } from '../io/records-file.ts';
import { readWholeTopic } from './stage-runner.ts';

export interface IngestResult<T> {
  /** Valid records of the file, in file order. */
  values: T[];
  produced: number;
  alreadyPresent: number;
  deadLettered: number;
}

/**
 * Puts a file's records on a topic once: records whose key is already on the topic (an earlier,
 * interrupted run) are not produced again; invalid ones go to dead-letter with file:line and reason.
 * `defaults` fills what a bare file cannot know (ids from the file position, the source name).
 */
export async function ingestFile<T>(
  bus: Bus,
  topic: string,
  deadLetterTopic: string,
  contract: TopicContract<T>,
  file: string,
  defaults: (record: Record<string, unknown>, source: string, index: number) => Record<string, unknown>,
): Promise<IngestResult<T>> {
  const present = new Set((await readWholeTopic(bus, topic, contract)).map((v) => contract.keyOf(v)));
  const values: T[] = [];
  const fresh: Array<{ key: string; value: Uint8Array }> = [];
  let deadLettered = 0;
  const source = basename(file);
  for await (const entry of readRecordEntries(file)) {
    try {
      const value = contract.validate(defaults(entry.value, source, entry.index));
      values.push(value);
      const key = contract.keyOf(value);
      if (!present.has(key)) fresh.push({ key, value: contract.encode(value) });
      present.add(key);
    } catch (err) {
      deadLettered++;
      const message = `${entry.location}: ${err instanceof Error ? err.message : String(err)}`;
      await bus.produce(deadLetterTopic, [
        deadLetterRecord({ topic, partition: -1, offset: -1, key: null, value: new TextEncoder().encode(toJsonLine(entry.value)) }, message),
      ]);
    }
  }
  for (let i = 0; i < fresh.length; i += 512) await bus.produce(topic, fresh.slice(i, i + 512));
  return { values, produced: fresh.length, alreadyPresent: values.length - fresh.length, deadLettered };
}

/** Prompt files are often bare lists of prompts: ids from the position, source from the file name. */
export function promptDefaults(v: Record<string, unknown>, source: string, index: number, arrivalTime = 0): Record<string, unknown> {
  return {
    ...v,
    promptId: v.promptId ?? v.prompt_id ?? v.id ?? `${source}:${index}`,
    prompt_id: undefined,
    id: undefined,
    source: v.source ?? source,
    arrivalTime: v.arrivalTime ?? arrivalTime,
    messages: typeof (v.text ?? v.prompt) === 'string' ? null : promptTurns(v.messages),
  };
}

/**
 * The prompt part of a conversation: up to its last user turn (ultrafeedback_binarized's `messages`
 * end with the assistant's answer, which is not part of the prompt).
 */
function promptTurns(messages: unknown): unknown {
  if (!Array.isArray(messages)) return messages ?? null;
  let end = messages.length;
  while (end > 0 && (messages[end - 1] as { role?: unknown })?.role === 'assistant') end--;
  return messages.slice(0, end);
}

/** Offline pairs without an id get one from their position. */
export function offlineDefaults(v: Record<string, unknown>, source: string, index: number): Record<string, unknown> {
  return { ...v, pairId: v.pairId ?? v.pair_id ?? v.prompt_id ?? `${source}:${index}`, source: v.source ?? source };
}
