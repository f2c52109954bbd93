import { basename } from 'node:path';
import type { Bus } from '../../topics/bus.ts';
import type { TopicContract } from '../../topics/contract.ts';
import type { TopicBaseName } from '../../topics/registry.ts';
import { deadLetterRecord } from '../../topics/dead-letter-record.ts';
import { readRecordsOrProblems, toJsonLine, type RecordsFormat } from '../io/records-file.ts';
import { readWholeTopic } from './stage-runner.ts';

export interface IngestResult<T> {
  /** Valid records of the file, in file order (first of each key; empty with `keepValues: false`). */
  values: T[];
  /** Records in the file: produced + alreadyPresent + deadLettered. */
  records: number;
  produced: number;
  /** Records whose key an earlier ingestion (an interrupted run, a first `dice produce`) already put on the topic. */
  alreadyPresent: number;
  deadLettered: number;
}

export interface IngestOptions {
  format?: RecordsFormat;
  /** Keep the valid records in `values` (default true; `dice produce` streams without). */
  keepValues?: boolean;
  /** Each dead-lettered record's message (`file:line: reason`), e.g. to print it. */
  onDeadLetter?: (message: string) => void;
  /**
   * The key rule (default on: prompts and offline pairs are entities named by their id): the first
   * record of a key wins; a later one in the file is dead-lettered naming the first, and one whose key
   * is already on the topic is not produced again, so re-ingesting a file (fixed or not) duplicates nothing.
   */
  firstKeyWins?: boolean;
}

const PRODUCE_BATCH = 512;

/**
 * Puts a file's records on a topic in one pass: each record is produced, found already on the
 * topic, or dead-lettered with its file:line and reason (unreadable line, invalid record, duplicate
 * key) — none is lost because of another. `defaults` fills what a bare file cannot know (ids from
 * the file position, the source name).
 */
export async function ingestFile<T>(
  bus: Bus,
  topic: string,
  deadLetterTopic: string,
  contract: TopicContract<T>,
  file: string,
  defaults: (record: Record<string, unknown>, source: string, index: number) => Record<string, unknown>,
  options: IngestOptions = {},
): Promise<IngestResult<T>> {
  const firstKeyWins = options.firstKeyWins ?? true;
  const keepValues = options.keepValues ?? true;
  const onTopic = new Set(firstKeyWins ? (await readWholeTopic(bus, topic, contract)).map((v) => contract.keyOf(v)) : []);
  const firstAt = new Map<string, string>();
  const values: T[] = [];
  let batch: Array<{ key: string; value: Uint8Array }> = [];
  const result = { records: 0, produced: 0, alreadyPresent: 0, deadLettered: 0 };
  const flush = async () => {
    if (batch.length === 0) return;
    await bus.produce(topic, batch);
    result.produced += batch.length;
    batch = [];
  };
  const deadLetter = async (location: string, problem: string, original: Uint8Array) => {
    result.deadLettered++;
    const message = `${location}: ${problem}`;
    options.onDeadLetter?.(message);
    await bus.produce(deadLetterTopic, [deadLetterRecord({ topic, partition: -1, offset: -1, key: null, value: original }, message)]);
  };
  const source = basename(file);
  for await (const entry of readRecordsOrProblems(file, options.format)) {
    result.records++;
    if (!entry.ok) {
      await deadLetter(entry.location, entry.problem, entry.raw);
      continue;
    }
    const original = () => new TextEncoder().encode(toJsonLine(entry.value));
    let value: T;
    try {
      value = contract.validate(defaults(entry.value, source, entry.index));
    } catch (err) {
      await deadLetter(entry.location, err instanceof Error ? err.message : String(err), original());
      continue;
    }
    const key = contract.keyOf(value);
    if (firstKeyWins) {
      const first = firstAt.get(key);
      if (first !== undefined) {
        await deadLetter(entry.location, `duplicate key ${JSON.stringify(key)}: the record at ${first} has it (the first one wins)`, original());
        continue;
      }
      firstAt.set(key, entry.location);
    }
    if (keepValues) values.push(value);
    if (onTopic.has(key)) {
      result.alreadyPresent++;
      continue;
    }
    batch.push({ key, value: contract.encode(value) });
    if (batch.length >= PRODUCE_BATCH) await flush();
  }
  await flush();
  return { values, ...result };
}

/** Prompt files are often bare lists of prompts: ids from the position, source from the file name. */
export function promptDefaults(v: Record<string, unknown>, source: string, index: number, arrivalTime = 0): Record<string, unknown> {
  // A record may say what its prompt is once: text and messages both would silently lose one.
  if (v.text !== undefined && v.text !== null && v.messages !== undefined && v.messages !== null) {
    throw new Error('has both "text" and "messages": give one (text for a plain prompt, messages for a conversation)');
  }
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

/** The defaults a record file gets on its way to a pipeline topic (prompts: ids and arrival time; offline: ids). */
export function ingestDefaults(base: TopicBaseName, arrivalTime = 0): (v: Record<string, unknown>, source: string, index: number) => Record<string, unknown> {
  if (base === 'prompts') return (v, source, index) => promptDefaults(v, source, index, arrivalTime);
  if (base === 'offline') return offlineDefaults;
  return (v) => v;
}

/** Topics whose key names an entity (a prompt, an offline pair): there, the first record of a key wins. */
export function firstKeyWinsOn(base: TopicBaseName): boolean {
  return base === 'prompts' || base === 'offline';
}
