import test from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_JUDGE, judgeLabel, judgeProbability, sigmoid } from '../../src/testbed/judge.ts';
import type { ArenaTask } from '../../src/testbed/tasks.ts';
import { Rng } from '../../src/util/random.ts';

const task: ArenaTask = { id: 'a', family: 'add', prompt: 'add 23 and 48', answer: '71' };
const terse = 'The answer is 71.';
const chatty = 'Great question! The answer is 71. I hope this helps!';
const chattyWrong = 'Great question! The answer is 12. I hope this helps!';

test('P(a ≻ b) follows the stated formula and is antisymmetric', () => {
  const dl = chatty.length - terse.length;
  assert.ok(Math.abs(judgeProbability(task, chatty, terse) - sigmoid((DEFAULT_JUDGE.wLength * dl) / DEFAULT_JUDGE.lengthScale)) < 1e-15);
  assert.ok(Math.abs(judgeProbability(task, chatty, terse) + judgeProbability(task, terse, chatty) - 1) < 1e-15);
  assert.equal(judgeProbability(task, terse, terse), 0.5);
});

test('the length bias is measurable: equal quality, the longer answer wins more than half the time', () => {
  const p = judgeProbability(task, chatty, terse);
  assert.ok(p > 0.75, `P(chatty ≻ terse) = ${p}`);
  const rng = new Rng(5);
  let wins = 0;
  for (let i = 0; i < 20000; i++) if (judgeLabel(task, chatty, terse, rng).aWins) wins++;
  assert.ok(Math.abs(wins / 20000 - p) < 0.015, `empirical ${wins / 20000} vs ${p}`);
  const unbiased = { ...DEFAULT_JUDGE, wLength: 0 };
  assert.equal(judgeProbability(task, chatty, terse, unbiased), 0.5);
});

test('quality still dominates: a right terse answer beats a wrong chatty one', () => {
  assert.ok(judgeProbability(task, terse, chattyWrong) > 0.95);
});

test('labels repeat for a seed', () => {
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 50 }, () => judgeLabel(task, chatty, terse, rng).aWins);
  };
  assert.deepEqual(draw(3), draw(3));
  assert.notDeepEqual(draw(3), draw(4));
});
