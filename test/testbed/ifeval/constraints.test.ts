import test from 'node:test';
import assert from 'node:assert/strict';
import { bulletCount, checkConstraint, compatible, CONSTRAINT_KINDS, instructionText, paragraphCount, stripCodeFence, words, type Constraint } from '../../../src/testbed/ifeval/constraints.ts';

const ok = (c: Constraint, text: string) => assert.equal(checkConstraint(c, text), true, `${c.kind} should accept ${JSON.stringify(text)}`);
const no = (c: Constraint, text: string) => assert.equal(checkConstraint(c, text), false, `${c.kind} should reject ${JSON.stringify(text)}`);

test('lowercase: Unicode case counts, letters are required', () => {
  const c: Constraint = { kind: 'lowercase' };
  ok(c, 'the café is open, and ß is lower case.\n- 42 items');
  no(c, 'the Café is open');
  no(c, 'the cafÉ is open'); // a non-ASCII capital
  no(c, 'ΑΘΗΝΑ'.toLowerCase().slice(0, 3) + 'Α');
  no(c, '123 !!!'); // no letter at all: not a lowercase response
});

test('uppercase: Unicode case counts, letters are required', () => {
  const c: Constraint = { kind: 'uppercase' };
  ok(c, 'THE CAFÉ IS OPEN, 24/7!');
  ok(c, 'ΑΘΗΝΑ 2024');
  no(c, 'THE CAFé IS OPEN');
  no(c, 'THE CAFE iS OPEN');
  no(c, '2024');
});

test('bullets: exactly N, markers * - + •, indented; bold and rules are not bullets', () => {
  const c: Constraint = { kind: 'bullets', n: 3 };
  ok(c, '* one\n* two\n* three');
  ok(c, 'Intro:\n- one\n  + two\n• three\nOutro.');
  ok(c, '**Bold heading**\n* one\n* two\n* three\n---\n* * *');
  no(c, '* one\n* two');
  no(c, '* one\n* two\n* three\n* four');
  no(c, '1. one\n2. two\n3. three'); // numbered items are not bullet points
  no(c, '*one\n*two\n*three'); // a marker needs a space after it
  assert.equal(bulletCount('-  spaced\n\t* tabbed\n-\n- '), 2);
});

test('word counts: Unicode words, contractions and hyphenated words are one word', () => {
  assert.deepEqual(words("Don't stop — well-known café, 3 times!"), ["Don't", 'stop', 'well-known', 'café', '3', 'times']);
  ok({ kind: 'maxWords', n: 5 }, 'one two three four five');
  no({ kind: 'maxWords', n: 5 }, 'one two three four five six');
  ok({ kind: 'maxWords', n: 5 }, '   '); // zero words is at most five
  ok({ kind: 'minWords', n: 3 }, 'naïve über café');
  no({ kind: 'minWords', n: 3 }, 'well-known café');
});

test('paragraphs: blank-line separated, white-space-only lines count as blank', () => {
  const c: Constraint = { kind: 'paragraphs', n: 2 };
  ok(c, 'First paragraph\nstill first.\n\nSecond one.');
  ok(c, '\n\nFirst.\n   \t\nSecond.\n\n');
  ok(c, 'First.\r\n\r\nSecond.');
  no(c, 'Only one\nparagraph here.');
  no(c, 'One.\n\nTwo.\n\nThree.');
  assert.equal(paragraphCount('a\n\n\n\nb'), 2);
});

test('include / avoid: whole words, case-insensitive', () => {
  ok({ kind: 'include', word: 'energy' }, 'Solar ENERGY is cheap.');
  no({ kind: 'include', word: 'energy' }, 'Energetic people.'); // a longer word does not count
  ok({ kind: 'avoid', word: 'water' }, 'Waterfalls are loud.');
  no({ kind: 'avoid', word: 'water' }, 'Drink Water daily.');
});

test('endPhrase: exact phrase at the very end, case and trailing white space aside', () => {
  const c: Constraint = { kind: 'endPhrase', phrase: 'That is all.' };
  ok(c, 'Coffee is nice. That is all.');
  ok(c, 'Coffee is nice. that is ALL.  \n');
  no(c, 'Coffee is nice. That is all. Bye.');
  no(c, 'Coffee is nice. That is all'); // the phrase's own full stop is part of it
});

test('quotes: the whole response in straight or curly double quotes', () => {
  const c: Constraint = { kind: 'quotes' };
  ok(c, '"Coffee is nice."');
  ok(c, '  “Coffee is nice.”\n');
  no(c, '"Coffee" is nice.');
  no(c, 'He said "hi"');
  no(c, '"');
  no(c, "'single quotes'");
});

test('title: non-empty, one-line <<…>>', () => {
  const c: Constraint = { kind: 'title' };
  ok(c, '<<The Moon>>\nIt orbits.');
  ok(c, 'Text first, then <<a title>>.');
  no(c, '<<>> nothing');
  no(c, '<<   >> blank');
  no(c, '<<split\ntitle>>');
  no(c, '<The Moon>');
});

test('noCommas: ASCII and full-width commas', () => {
  ok({ kind: 'noCommas' }, 'No commas here; only semicolons.');
  no({ kind: 'noCommas' }, 'One, two.');
  no({ kind: 'noCommas' }, '一，二');
});

test('json: plain or inside one code fence, whole output only', () => {
  const c: Constraint = { kind: 'json' };
  ok(c, '{"topic": "tea", "facts": ["green", "black"]}');
  ok(c, '```json\n{"a": 1}\n```');
  ok(c, '```\n[1, 2, 3]\n```');
  ok(c, '  ```JSON\n{"a": 1}```  ');
  no(c, 'Here is the JSON: {"a": 1}');
  no(c, '```json\n{"a": 1,}\n```');
  no(c, '```json\n{"a": 1}\n```\nHope this helps!');
  no(c, '');
  assert.equal(stripCodeFence('```json\n{"a":1}\n```'), '{"a":1}');
});

test('repeat: starts with the request, case and spacing aside', () => {
  const c: Constraint = { kind: 'repeat', request: 'Describe the moon.' };
  ok(c, 'Describe the moon. The moon is bright.');
  ok(c, 'describe  the\nmoon. It is bright.');
  no(c, 'Sure! Describe the moon. It is bright.');
  no(c, 'Describe the Moon');
});

test('every kind has an instruction sentence and a checker that can both accept and reject', () => {
  const samples: Record<string, [Constraint, string, string]> = {
    lowercase: [{ kind: 'lowercase' }, 'abc', 'Abc'],
    uppercase: [{ kind: 'uppercase' }, 'ABC', 'AbC'],
    bullets: [{ kind: 'bullets', n: 1 }, '* a', 'a'],
    maxWords: [{ kind: 'maxWords', n: 1 }, 'a', 'a b'],
    minWords: [{ kind: 'minWords', n: 2 }, 'a b', 'a'],
    paragraphs: [{ kind: 'paragraphs', n: 1 }, 'a', 'a\n\nb'],
    include: [{ kind: 'include', word: 'x' }, 'x', 'y'],
    avoid: [{ kind: 'avoid', word: 'x' }, 'y', 'x'],
    endPhrase: [{ kind: 'endPhrase', phrase: 'end.' }, 'the end.', 'end. no'],
    quotes: [{ kind: 'quotes' }, '"a"', 'a'],
    title: [{ kind: 'title' }, '<<a>>', 'a'],
    noCommas: [{ kind: 'noCommas' }, 'a', 'a,'],
    json: [{ kind: 'json' }, '{}', '{'],
    repeat: [{ kind: 'repeat', request: 'Do it.' }, 'Do it. Done.', 'Done.'],
  };
  assert.deepEqual(Object.keys(samples).sort(), [...CONSTRAINT_KINDS].sort());
  for (const [c, yes, nope] of Object.values(samples)) {
    assert.ok(instructionText(c).length > 10);
    ok(c, yes);
    no(c, nope);
  }
});

test('compatible is symmetric and excludes contradictions', () => {
  for (const a of CONSTRAINT_KINDS) for (const b of CONSTRAINT_KINDS) assert.equal(compatible(a, b), compatible(b, a), `${a}/${b}`);
  assert.equal(compatible('lowercase', 'uppercase'), false);
  assert.equal(compatible('json', 'bullets'), false);
  assert.equal(compatible('json', 'include'), true);
  assert.equal(compatible('title', 'title'), false);
});
