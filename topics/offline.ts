import { utf8 } from './codec.ts';
import { chatMessages, schemaOf, type ChatMessage } from './common.ts';
import { arrowContract } from './contract.ts';

/**
 * A pair of D_offline, the offline preference set mixed into training (experience replay), in the
 * shape of Hugging Face DPO datasets. Each answer is either text or a chat message list (as in
 * ultrafeedback_binarized, whose chosen/rejected are [{role, content}, ...] including the prompt
 * turn); exactly one form is set per side. Key: pairId.
 */
export interface OfflinePair {
  pairId: string;
  prompt: string;
  chosen: string | null;
  rejected: string | null;
  chosenMessages: ChatMessage[] | null;
  rejectedMessages: ChatMessage[] | null;
  /** Dataset name or other provenance. */
  source: string | null;
}

export const offlineSchema = schemaOf([
  utf8('pairId'),
  utf8('prompt'),
  utf8('chosen', true),
  utf8('rejected', true),
  chatMessages('chosenMessages', true),
  chatMessages('rejectedMessages', true),
  utf8('source', true),
]);

/** Hugging Face rows: `chosen`/`rejected` as text or message lists; id from pairId, pair_id or prompt_id. */
function fromHuggingFace(v: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...v };
  out.pairId = v.pairId ?? v.pair_id ?? v.prompt_id;
  for (const side of ['chosen', 'rejected'] as const) {
    const value = v[side];
    const messagesKey = `${side}Messages`;
    if (Array.isArray(value)) {
      out[side] = null;
      out[messagesKey] = value;
    } else {
      out[side] = value ?? null;
      out[messagesKey] = v[messagesKey] ?? null;
    }
  }
  return out;
}

export const offlineTopic = arrowContract<OfflinePair>({
  name: 'offline',
  schema: offlineSchema,
  defaultPartitions: 1,
  keyOf: (p) => p.pairId,
  normalize: fromHuggingFace,
  dropExtraFields: true,
  check(p, fail) {
    if (p.pairId.length === 0) fail('pairId', 'must not be empty');
    for (const side of ['chosen', 'rejected'] as const) {
      const messages = p[`${side}Messages`];
      if ((p[side] === null) === (messages === null)) fail(side, 'needs exactly one of text or a message list');
      if (messages && !messages.some((m) => m.role === 'assistant')) fail(`${side}Messages`, 'has no assistant message');
    }
  },
});
