/**
 * Verifiable instructions in the style of IFEval (Zhou et al. 2023): each constraint kind has an
 * instruction sentence appended to a base request and a strict checker of the response. The checkers
 * are written here from these definitions (not ported from IFEval's code):
 *
 *   lowercase       every cased letter is lower case (Unicode case), at least one letter
 *   uppercase       every cased letter is upper case (Unicode case), at least one letter
 *   bullets N       exactly N lines that start with a markdown bullet (*, -, + or •, then a space)
 *   maxWords N      at most N words (a word: a run of Unicode letters/digits, inner ' or - allowed)
 *   minWords N      at least N words
 *   paragraphs N    exactly N non-empty paragraphs separated by blank lines
 *   include W       the word W appears (whole word, case-insensitive)
 *   avoid W         the word W does not appear (whole word, case-insensitive)
 *   endPhrase P     the response ends with P (case-insensitive; only white space may follow)
 *   quotes          the whole response is wrapped in double quotation marks (" … " or “ … ”)
 *   title           a title wrapped in double angular brackets, <<like this>> (non-empty, one line)
 *   noCommas        no comma anywhere (ASCII , or the full-width ，)
 *   json            the whole response is valid JSON, optionally inside one markdown code fence
 *   repeat          the response starts with the base request, word for word (case and spacing aside)
 */

export const CONSTRAINT_KINDS = [
  'lowercase',
  'uppercase',
  'bullets',
  'maxWords',
  'minWords',
  'paragraphs',
  'include',
  'avoid',
  'endPhrase',
  'quotes',
  'title',
  'noCommas',
  'json',
  'repeat',
] as const;
export type ConstraintKind = (typeof CONSTRAINT_KINDS)[number];

export type Constraint =
  | { kind: 'lowercase' | 'uppercase' | 'quotes' | 'title' | 'noCommas' | 'json' }
  | { kind: 'bullets' | 'maxWords' | 'minWords' | 'paragraphs'; n: number }
  | { kind: 'include' | 'avoid'; word: string }
  | { kind: 'endPhrase'; phrase: string }
  | { kind: 'repeat'; request: string };

/** The instruction sentence a constraint adds to the prompt. */
export function instructionText(c: Constraint): string {
  switch (c.kind) {
    case 'lowercase':
      return 'Your entire response should be in English and in lowercase letters; no capital letters are allowed.';
    case 'uppercase':
      return 'Your entire response should be in English and in capital letters only.';
    case 'bullets':
      return `Your answer must contain exactly ${c.n} bullet points. Use markdown bullet points such as:\n* This is a point.`;
    case 'maxWords':
      return `Answer with at most ${c.n} words.`;
    case 'minWords':
      return `Answer with at least ${c.n} words.`;
    case 'paragraphs':
      return `There should be exactly ${c.n} paragraphs, separated from each other by a blank line.`;
    case 'include':
      return `Include the word "${c.word}" in your response.`;
    case 'avoid':
      return `Do not use the word "${c.word}" anywhere in your response.`;
    case 'endPhrase':
      return `Finish your response with this exact phrase: "${c.phrase}". No other words should follow it.`;
    case 'quotes':
      return 'Wrap your entire response with double quotation marks.';
    case 'title':
      return 'Your answer must contain a title, wrapped in double angular brackets, such as <<my title>>.';
    case 'noCommas':
      return 'In your entire response, refrain from the use of any commas.';
    case 'json':
      return 'Your entire output should be wrapped in JSON format.';
    case 'repeat':
      return 'First repeat the request word for word without change, then give your answer (do not say anything before repeating the request; the request you need to repeat does not include this sentence).';
  }
}

/** Words of a text: runs of Unicode letters or digits, with inner apostrophes or hyphens (don't, well-known). */
export function words(text: string): string[] {
  return text.match(/[\p{L}\p{N}]+(?:['’-][\p{L}\p{N}]+)*/gu) ?? [];
}

const hasLetter = (text: string) => /\p{L}/u.test(text);

/** Lines that start a markdown bullet: optional indentation, one of * - + •, then white space and text. */
export function bulletCount(text: string): number {
  let n = 0;
  for (const line of text.split(/\r?\n/)) {
    // "* * *" and "---" are horizontal rules, "**bold**" is not a bullet: a marker needs a space after it
    if (/^\s*(?:[*+-]\s*){3,}$/.test(line)) continue;
    if (/^\s*[*+\-•]\s+\S/u.test(line)) n++;
  }
  return n;
}

export function paragraphCount(text: string): number {
  return text
    .trim()
    .split(/\r?\n[ \t]*\r?\n/)
    .filter((p) => p.trim().length > 0).length;
}

function containsWord(text: string, word: string): boolean {
  const target = word.toLocaleLowerCase('en');
  return words(text).some((w) => w.toLocaleLowerCase('en') === target);
}

/** The text inside one markdown code fence (```json … ``` or ``` … ```), or the text itself. */
export function stripCodeFence(text: string): string {
  const m = /^```[\w-]*[ \t]*\r?\n([\s\S]*?)\r?\n?```$/.exec(text.trim());
  return m ? m[1] : text.trim();
}

const normalised = (text: string) => text.toLocaleLowerCase('en').replace(/\s+/g, ' ').trim();

/** Whether the response follows the constraint. */
export function checkConstraint(c: Constraint, response: string): boolean {
  const text = response.trim();
  switch (c.kind) {
    case 'lowercase':
      return hasLetter(text) && text === text.toLocaleLowerCase('en');
    case 'uppercase':
      return hasLetter(text) && text === text.toLocaleUpperCase('en');
    case 'bullets':
      return bulletCount(text) === c.n;
    case 'maxWords':
      return words(text).length <= c.n;
    case 'minWords':
      return words(text).length >= c.n;
    case 'paragraphs':
      return paragraphCount(text) === c.n;
    case 'include':
      return containsWord(text, c.word);
    case 'avoid':
      return !containsWord(text, c.word);
    case 'endPhrase':
      return text.toLocaleLowerCase('en').endsWith(c.phrase.trim().toLocaleLowerCase('en'));
    case 'quotes':
      return text.length >= 2 && ((text.startsWith('"') && text.endsWith('"')) || (text.startsWith('“') && text.endsWith('”')));
    case 'title':
      return /<<[^<>\n]*[^\s<>][^<>\n]*>>/.test(text);
    case 'noCommas':
      return !/[,，]/.test(text);
    case 'json': {
      const body = stripCodeFence(text);
      if (body.length === 0) return false;
      try {
        JSON.parse(body);
        return true;
      } catch {
        return false;
      }
    }
    case 'repeat':
      return normalised(text).startsWith(normalised(c.request));
  }
}

/**
 * Pairs of kinds that cannot both hold, or that make each other ill-defined: never drawn together.
 * JSON goes only with keyword and word-count constraints (a JSON text has commas, quotes and its own
 * line structure); a quoted response cannot start with the request or end with a phrase.
 */
const JSON_FRIENDLY: ReadonlySet<ConstraintKind> = new Set(['include', 'avoid', 'maxWords', 'minWords', 'lowercase']);
export function compatible(a: ConstraintKind, b: ConstraintKind): boolean {
  if (a === b) return false;
  const pair = (x: ConstraintKind, y: ConstraintKind) => (a === x && b === y) || (a === y && b === x);
  if (a === 'json') return JSON_FRIENDLY.has(b);
  if (b === 'json') return JSON_FRIENDLY.has(a);
  return !(
    pair('lowercase', 'uppercase') ||
    pair('maxWords', 'minWords') ||
    pair('bullets', 'paragraphs') ||
    pair('include', 'avoid') ||
    pair('quotes', 'endPhrase') ||
    pair('quotes', 'repeat') ||
    pair('quotes', 'bullets') ||
    pair('quotes', 'paragraphs') ||
    pair('repeat', 'lowercase') ||
    pair('repeat', 'uppercase') ||
    pair('repeat', 'noCommas') ||
    pair('repeat', 'maxWords')
  );
}
