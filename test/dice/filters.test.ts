import test from 'node:test';
import assert from 'node:assert/strict';
import { filterGroup, filterGroups } from '../../src/dice/filters.ts';

const r = (text: string, finishReason = 'stop') => ({ text, finishReason });

test('drops token-limit hits, out-of-bounds lengths, and counts why', () => {
  const group = [r('fine answer'), r('cut off mid', 'length'), r(''), r('x'.repeat(50)), r('ok')];
  const res = filterGroup(group, { minLength: 2, maxLength: 20 });
  assert.deepEqual(res.keptIndices, [0, 4]);
  assert.deepEqual(res.kept.map((x) => x.text), ['fine answer', 'ok']);
  assert.deepEqual(res.dropped, { truncated: 1, tooShort: 1, tooLong: 1 });
  assert.equal(res.groupKept, false); // 2 of 5 survive, half would be 3
  const keepTruncated = filterGroup(group, { minLength: 2, maxLength: 20, dropTruncated: false });
  assert.deepEqual(keepTruncated.keptIndices, [0, 1, 4]);
  assert.equal(keepTruncated.groupKept, true);
});

test('a group survives with at least half of K; never with fewer than 2', () => {
  const eight = Array.from({ length: 8 }, (_, i) => r(`answer ${i}`, i < 4 ? 'length' : 'stop'));
  assert.equal(filterGroup(eight).groupKept, true); // 4 of 8
  assert.equal(filterGroup(eight.slice(0, 7)).groupKept, false); // 3 of 7 (needs 4)
  assert.equal(filterGroup(eight, { k: 16 }).groupKept, false); // K=16 asked, 4 arrived and survived
  assert.equal(filterGroup([r('a'), r('b', 'length')], { minKeptFraction: 0 }).groupKept, false);
  assert.equal(filterGroup(eight, { minKeptFraction: 0.75 }).groupKept, false);
});

test('token lengths are an option; filterGroups reports totals', () => {
  const groups = [
    { id: 'p1', responses: [{ text: 'aaaa', tokenCount: 1, finishReason: 'stop' }, { text: 'b', tokenCount: 9, finishReason: 'stop' }] },
    { id: 'p2', responses: [{ text: 'cc', tokenCount: 2, finishReason: 'length' }, { text: 'dd', tokenCount: 2, finishReason: 'stop' }] },
  ];
  const { kept, report } = filterGroups(groups, (g) => g.responses, { lengthUnit: 'tokens', maxLength: 5 });
  assert.deepEqual(kept.map((k) => k.group.id), []);
  assert.deepEqual(report, {
    groupsIn: 2,
    groupsKept: 0,
    groupsDropped: 2,
    responsesIn: 4,
    responsesKept: 0,
    dropped: { truncated: 1, tooShort: 0, tooLong: 1 },
  });
  const chars = filterGroups(groups, (g) => g.responses, { maxLength: 5 });
  assert.deepEqual(chars.kept.map((k) => k.group.id), ['p1']);
  assert.equal(chars.report.responsesKept, 2);
});

test('bad options are refused', () => {
  assert.throws(() => filterGroup([], { minLength: 5, maxLength: 2 }), /maxLength/);
  assert.throws(() => filterGroup([], { minKeptFraction: 2 }), /minKeptFraction/);
  assert.throws(() => filterGroup([], { k: 0 }), /k must be/);
});
