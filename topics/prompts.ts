import { float64, utf8 } from './codec.ts';
import { chatMessages, schemaOf, type ChatMessage } from './common.ts';
import { arrowContract } from './contract.ts';

/** A prompt entering the loop. Exactly one of `text` and `messages` is set. Key: promptId. */
export interface PromptRecord {
  promptId: string;
  /** A plain-text prompt (rendered by the chat template downstream), or null when `messages` is set. */
  text: string | null;
  /** A chat conversation ending with the user's turn, or null when `text` is set. */
  messages: ChatMessage[] | null;
  /** Where it came from (a dataset name, "api", a user id). */
  source: string;
  /** Milliseconds since epoch. */
  arrivalTime: number;
}

export const promptsSchema = schemaOf([
  utf8('promptId'),
  utf8('text', true),
  chatMessages('messages', true),
  utf8('source'),
  float64('arrivalTime'),
]);

export const promptsTopic = arrowContract<PromptRecord>({
  name: 'prompts',
  schema: promptsSchema,
  defaultPartitions: 4,
  keyOf: (p) => p.promptId,
  normalize: (v) => ({ ...v, prompt: undefined, text: v.text ?? (typeof v.prompt === 'string' ? v.prompt : undefined) }),
  // dataset files carry other columns (chosen, rejected, scores, …)
  dropExtraFields: true,
  check(p, fail) {
    if (p.promptId.length === 0) fail('promptId', 'must not be empty');
    if ((p.text === null) === (p.messages === null)) {
      fail(p.text === null ? 'text' : 'messages', 'exactly one of text and messages must be set');
    }
    if (p.messages && p.messages.length === 0) fail('messages', 'must hold at least one message');
  },
});
