import test from 'node:test';
import assert from 'node:assert/strict';
import { charLength, implicitReward, implicitRewards, responseLength, shapedReward } from '../../src/dice/reward.ts';

test('implicit reward is β·(log π_θ − log π_ref) (Eq. 4); shaping subtracts α|y| (Eq. 5)', () => {
  assert.equal(implicitReward(-10, -12, 0.1), 0.1 * 2);
  assert.deepEqual([...implicitRewards([-10, -5], [-12, -4], 0.5)], [1, -0.5]);
  assert.equal(shapedReward(1.5, 20, 0.025), 1);
});

test('implicitRewards refuses mismatched or non-finite input, naming the entry', () => {
  assert.throws(() => implicitRewards([1, 2], [1], 0.1), /2 entries but refLogProbs has 1/);
  assert.throws(() => implicitRewards([1, -Infinity], [1, 1], 0.1), /policyLogProbs\[1\] is -Infinity/);
  assert.throws(() => implicitRewards([1], [NaN], 0.1), /refLogProbs\[0\] is NaN/);
  assert.throws(() => implicitRewards([1], [1], 0), /beta must be a positive number/);
});

test('lengths count code points like Python len(); tokens are an option', () => {
  assert.equal(charLength('hello'), 5);
  assert.equal(charLength('héllo'), 5);
  assert.equal(charLength('a😀b'), 3); // the emoji is 2 UTF-16 units, 1 code point
  assert.equal(responseLength({ text: 'a😀b' }), 3);
  assert.equal(responseLength({ text: 'abc', tokenIds: [5, 6] }, 'tokens'), 2);
  assert.equal(responseLength({ text: 'abc', tokenIds: [5, 6], tokenCount: 4 }, 'tokens'), 4);
  assert.throws(() => responseLength({ text: 'abc' }, 'tokens'), /needs tokenCount or tokenIds/);
});
