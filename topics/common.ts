import { type Field, Schema } from 'apache-arrow';
import { enumeration, listOf, struct, utf8 } from './codec.ts';

/** Pieces several topic contracts share: chat messages and the character length rule. */

export const chatRoles = ['system', 'user', 'assistant'] as const;
export type ChatRole = (typeof chatRoles)[number];

export interface ChatMessage {
  role: ChatRole;
  content: string;
}

export const chatMessageType = struct([enumeration('role', chatRoles), utf8('content')]);
export const chatMessages = (name: string, nullable = false) => listOf(name, chatMessageType, nullable);

/**
 * A response's length in characters, as the paper's Eq. 5 uses it: Unicode code points (Python's
 * len(str)), not UTF-16 code units, so an emoji counts once.
 */
export function charLength(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** A response as text + token ids whose stated lengths must agree with its content. */
export interface LengthFields {
  text: string;
  tokenIds: Int32Array;
  charLength: number;
  tokenLength: number;
}

export function checkLengths(r: LengthFields, path: string, fail: (field: string, problem: string) => never): void {
  const chars = charLength(r.text);
  if (r.charLength !== chars) fail(`${path}.charLength`, `is ${r.charLength} but the text has ${chars} characters`);
  if (r.tokenLength !== r.tokenIds.length) {
    fail(`${path}.tokenLength`, `is ${r.tokenLength} but tokenIds has ${r.tokenIds.length} ids`);
  }
}

export function schemaOf(fields: Field[]): Schema {
  return new Schema(fields);
}
