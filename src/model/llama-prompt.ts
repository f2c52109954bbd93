import type { ChatMessage, ChatTemplate } from './chat-template.ts';
import type { Tokenizer } from './tokenizer.ts';

/**
 * A prompt as the engines take it: token ids as they are, or text / chat messages through the
 * model's tokenizer (and its chat template when `chat` is asked for).
 */
export interface PromptInput {
  promptTokenIds?: number[];
  /** Plain text, or chat messages (these need `chat`). */
  prompt?: string | ChatMessage[];
  /** Render through the chat template (a plain-text prompt becomes one user message). */
  chat?: boolean;
}

export interface TextModel {
  tokenizer: Tokenizer | null;
  chatTemplate: ChatTemplate | null;
}

export function encodePrompt(input: PromptInput, model: TextModel, what: string): number[] {
  if (input.promptTokenIds) return input.promptTokenIds;
  if (input.prompt === undefined) throw new Error(`${what}: give promptTokenIds or prompt`);
  const tok = model.tokenizer;
  if (!tok) throw new Error(`${what}: a text prompt needs a tokenizer, and this model has none (pass token ids)`);
  if (input.chat) {
    if (!model.chatTemplate) throw new Error(`${what}: chat was asked for, but the model has no chat template`);
    const messages = typeof input.prompt === 'string' ? [{ role: 'user', content: input.prompt }] : input.prompt;
    // the rendered text carries the template's own BOS and markers
    return tok.encode(model.chatTemplate.render(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
  }
  if (typeof input.prompt !== 'string') throw new Error(`${what}: chat messages need chat: true`);
  return tok.encode(input.prompt);
}
