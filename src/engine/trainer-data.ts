import { RecordsFileError, readRecordEntries } from '../io/records-file.ts';
import type { ChatMessage } from '../model/chat-template.ts';
import { encodePrompt, type TextModel } from '../model/llama-prompt.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import type { PreferencePair, SftExample } from './trainer-batch.ts';

/**
 * Training records from files, tokenized for the trainer. Preference records are HF-style:
 *   {prompt, chosen, rejected}  — prompt text or chat messages; chosen/rejected text, or chat
 *   message lists whose last assistant message is the response (the TRL "conversational" form);
 * or token ids {prompt_token_ids, chosen_token_ids, rejected_token_ids}. Optional inline reference
 * log-probs: ref_chosen_logp, ref_rejected_logp. SFT records: {prompt, completion} (or token ids
 * prompt_token_ids, completion_token_ids). Text responses get the model's first EOS appended.
 */
export interface TokenizedPair extends Omit<PreferencePair, 'refChosenLogp' | 'refRejectedLogp'> {
  id: string;
  location: string;
  refChosenLogp?: number;
  refRejectedLogp?: number;
}

export interface TextEncoder extends TextModel {
  tokenizer: Tokenizer | null;
  eosTokenId: number | null;
  chat: boolean;
}

function tokenIds(value: Record<string, unknown>, key: string, location: string): number[] | undefined {
  const v = value[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length === 0 || !v.every((t) => Number.isSafeInteger(t) && t >= 0)) {
    throw new RecordsFileError(location, `"${key}" must be a non-empty list of token ids`);
  }
  return v as number[];
}

function responseText(value: unknown, key: string, location: string): string {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const last = [...(value as ChatMessage[])].reverse().find((m) => m && m.role === 'assistant');
    if (last && typeof last.content === 'string') return last.content;
  }
  throw new RecordsFileError(location, `"${key}" must be text or chat messages ending in an assistant message`);
}

function encodeResponse(text: string, enc: TextEncoder, location: string): number[] {
  if (!enc.tokenizer) throw new RecordsFileError(location, 'text needs a tokenizer, and the model has none (give token ids)');
  const ids = enc.tokenizer.encode(text, { addSpecialTokens: false });
  if (enc.eosTokenId === null) throw new RecordsFileError(location, 'the model has no EOS id to end a text response with');
  return [...ids, enc.eosTokenId];
}

function encodePromptOf(value: Record<string, unknown>, enc: TextEncoder, location: string): number[] {
  const ids = tokenIds(value, 'prompt_token_ids', location);
  if (ids) return ids;
  const prompt = value.prompt;
  if (typeof prompt !== 'string' && !Array.isArray(prompt)) throw new RecordsFileError(location, 'needs "prompt" (text or chat messages) or "prompt_token_ids"');
  const chat = enc.chat || Array.isArray(prompt);
  try {
    return encodePrompt({ prompt: prompt as string | ChatMessage[], chat }, enc, location);
  } catch (err) {
    throw new RecordsFileError(location, (err as Error).message);
  }
}

function optionalNumber(value: Record<string, unknown>, key: string, location: string): number | undefined {
  const v = value[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new RecordsFileError(location, `"${key}" must be a finite number`);
  return v;
}

export async function readPreferencePairs(path: string, enc: TextEncoder): Promise<TokenizedPair[]> {
  const pairs: TokenizedPair[] = [];
  for await (const { value, index, location } of readRecordEntries(path)) {
    const response = (key: 'chosen' | 'rejected') =>
      tokenIds(value, `${key}_token_ids`, location) ??
      (value[key] === undefined
        ? (() => {
            throw new RecordsFileError(location, `needs "${key}" or "${key}_token_ids"`);
          })()
        : encodeResponse(responseText(value[key], key, location), enc, location));
    pairs.push({
      id: String(value.id ?? index),
      location,
      promptTokenIds: encodePromptOf(value, enc, location),
      chosenTokenIds: response('chosen'),
      rejectedTokenIds: response('rejected'),
      refChosenLogp: optionalNumber(value, 'ref_chosen_logp', location),
      refRejectedLogp: optionalNumber(value, 'ref_rejected_logp', location),
      chosenLength: typeof value.chosen === 'string' ? value.chosen.length : undefined,
      rejectedLength: typeof value.rejected === 'string' ? value.rejected.length : undefined,
    });
  }
  if (pairs.length === 0) throw new Error(`${path}: no preference records`);
  return pairs;
}

export async function readSftExamples(path: string, enc: TextEncoder): Promise<SftExample[]> {
  const out: SftExample[] = [];
  for await (const { value, location } of readRecordEntries(path)) {
    const completion =
      tokenIds(value, 'completion_token_ids', location) ??
      (value.completion === undefined
        ? (() => {
            throw new RecordsFileError(location, 'needs "completion" or "completion_token_ids"');
          })()
        : encodeResponse(responseText(value.completion, 'completion', location), enc, location));
    out.push({ promptTokenIds: encodePromptOf(value, enc, location), completionTokenIds: completion });
  }
  if (out.length === 0) throw new Error(`${path}: no SFT records`);
  return out;
}

/** Reference log-probs from a file of {id?, ref_chosen_logp, ref_rejected_logp}, matched by id (or order). */
export async function applyRefLogpsFile(path: string, pairs: TokenizedPair[]): Promise<void> {
  const byId = new Map<string, { c: number; r: number }>();
  const inOrder: Array<{ c: number; r: number }> = [];
  for await (const { value, index, location } of readRecordEntries(path)) {
    const c = optionalNumber(value, 'ref_chosen_logp', location);
    const r = optionalNumber(value, 'ref_rejected_logp', location);
    if (c === undefined || r === undefined) throw new RecordsFileError(location, 'needs "ref_chosen_logp" and "ref_rejected_logp"');
    byId.set(String(value.id ?? index), { c, r });
    inOrder.push({ c, r });
  }
  pairs.forEach((p, i) => {
    const hit = byId.get(p.id) ?? inOrder[i];
    if (!hit) throw new Error(`${path}: no reference log-probs for pair ${p.id} (${p.location})`);
    p.refChosenLogp = hit.c;
    p.refRejectedLogp = hit.r;
  });
}
