/**
 * The arena's small language: its alphabet, pseudo-words, filler phrases and the one answer
 * statement every response uses. Kept tiny so a char-level or small-BPE Llama learns it in minutes.
 */
import type { Rng } from '../util/random.ts';

/** Every character any prompt, response or reference of the arena can contain. */
export const ARENA_ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?=';

/** Filler that adds length but no quality (a response can open and close with one each). */
export const OPENERS = ['Sure!', 'Okay.', 'Of course!', 'Great question!'] as const;
export const CLOSERS = ['Hope this helps.', 'I hope this helps!', 'Let me know!', 'Happy to help.'] as const;

/** The marker that introduces a claimed answer; quality.ts reads answers after it. */
export const ANSWER_MARKER = 'The answer is';

const CONSONANTS = 'bdfgklmnprstvz';
const VOWELS = 'aeiou';

/** A pronounceable pseudo-word of 3..maxLength lowercase letters (CV syllables, maybe a final consonant). */
export function pseudoWord(rng: Rng, maxLength = 7): string {
  const target = 3 + rng.int(maxLength - 2);
  let w = '';
  while (w.length < target) {
    w += w.length + 1 === target ? CONSONANTS[rng.int(CONSONANTS.length)] : CONSONANTS[rng.int(CONSONANTS.length)] + VOWELS[rng.int(VOWELS.length)];
  }
  return w.slice(0, target);
}

/** How much filler wraps the answer: 0 none, 1 an opener or a closer, 2 both. */
export type FillerLevel = 0 | 1 | 2;

/** Composes a free-text response: [opener ]The answer is X.[ closer] — or filler alone when `answer` is null. */
export function composeResponse(answer: string | null, level: FillerLevel, rng: Rng): string {
  const parts: string[] = [];
  const opener = level === 2 || (level === 1 && rng.next() < 0.5);
  const closer = level === 2 || (level === 1 && !opener);
  if (opener) parts.push(OPENERS[rng.int(OPENERS.length)]);
  if (answer !== null) parts.push(`${ANSWER_MARKER} ${answer}.`);
  if (closer || (answer === null && !opener)) parts.push(CLOSERS[rng.int(CLOSERS.length)]);
  return parts.join(' ');
}

/** Levenshtein distance (unit costs). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
