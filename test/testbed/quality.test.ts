import test from 'node:test';
import assert from 'node:assert/strict';
import { extractClaims, quality } from '../../src/testbed/quality.ts';
import type { ArenaTask } from '../../src/testbed/tasks.ts';

const rev: ArenaTask = { id: 'r', family: 'reverse', prompt: 'reverse the word tamok', answer: 'komat' };
const up: ArenaTask = { id: 'u', family: 'upper', prompt: 'uppercase the word tamok', answer: 'TAMOK' };
const add: ArenaTask = { id: 'a', family: 'add', prompt: 'add 23 and 48', answer: '71' };

test('right answers score 1 with or without filler', () => {
  assert.equal(quality(rev, 'The answer is komat.'), 1);
  assert.equal(quality(rev, 'Great question! The answer is komat. I hope this helps!'), 1);
  assert.equal(quality(add, 'the answer is 71'), 1);
});

test('near misses score partly, wrong answers and no answer score 0', () => {
  assert.equal(quality(rev, 'The answer is komut.'), 1 - 2 / 5); // one substitution in 5 letters
  assert.equal(quality(up, 'The answer is TAmOK.'), 0.6); // case matters for uppercase
  assert.equal(quality(up, 'The answer is tamok.'), 0);
  assert.equal(quality(add, 'The answer is 72.'), 0.5);
  assert.equal(quality(add, 'The answer is 69.'), 0.25);
  assert.equal(quality(add, 'The answer is seventy.'), 0);
  assert.equal(quality(rev, 'The answer is tamok.'), 0);
  assert.equal(quality(rev, 'Sure! Hope this helps.'), 0);
});

test('hedging between answers scores the worst claim', () => {
  assert.deepEqual(extractClaims('The answer is 71. Or the answer is 12.'), ['71', '12']);
  assert.equal(quality(add, 'The answer is 71. Or the answer is 12.'), 0.5 ** 59);
  assert.equal(quality(add, 'The answer is 72. The answer is 71.'), 0.5);
});
