import test from 'node:test';
import assert from 'node:assert/strict';
import { CONSTRAINT_KINDS, checkConstraint, compatible } from '../../../src/testbed/ifeval/constraints.ts';
import { baseRequests, ifevalAccuracy, ifevalQuality, makeIfevalSplit, splitTopics, TOPICS } from '../../../src/testbed/ifeval/tasks.ts';

test('a few hundred distinct base requests', () => {
  const reqs = baseRequests();
  assert.equal(reqs.length, 288);
  assert.equal(new Set(reqs.map((r) => r.request)).size, reqs.length);
});

test('splits are fixed, disjoint by topic and by prompt, and cover every kind', () => {
  const topics = splitTopics();
  assert.deepEqual([...topics.train, ...topics.validation, ...topics.test].sort(), [...TOPICS].sort());
  const splits = { train: makeIfevalSplit('train'), validation: makeIfevalSplit('validation'), test: makeIfevalSplit('test') };
  assert.deepEqual(makeIfevalSplit('test'), splits.test); // deterministic, no run seed
  assert.deepEqual([splits.train.length, splits.validation.length, splits.test.length], [324, 54, 72]);
  const requests = (s: keyof typeof splits) => new Set(splits[s].map((t) => t.request));
  for (const [a, b] of [['train', 'validation'], ['train', 'test'], ['validation', 'test']] as const) {
    for (const r of requests(a)) assert.ok(!requests(b).has(r), `${r} in ${a} and ${b}`);
  }
  for (const s of Object.values(splits)) {
    const kinds = new Set(s.flatMap((t) => t.constraints.map((c) => c.kind)));
    assert.equal(kinds.size, CONSTRAINT_KINDS.length);
    for (const t of s) {
      assert.ok(t.constraints.length === 1 || t.constraints.length === 2);
      if (t.constraints.length === 2) assert.ok(compatible(t.constraints[0].kind, t.constraints[1].kind), t.prompt);
      assert.ok(t.prompt.startsWith(t.request));
    }
  }
  assert.ok(splits.test.some((t) => t.constraints.length === 2) && splits.test.some((t) => t.constraints.length === 1));
});

test('prompt-level and instruction-level strict accuracy', () => {
  const [a, b] = makeIfevalSplit('test').filter((t) => t.constraints.length === 2 && t.constraints.every((c) => c.kind !== 'repeat' && c.kind !== 'json'));
  // a response that follows nothing of a, and one crafted per constraint of b is checked by the checkers themselves
  const items = [
    { task: a, response: '' },
    { task: b, response: 'x' },
  ];
  const acc = ifevalAccuracy(items);
  const verdicts = items.flatMap((it) => it.task.constraints.map((c) => checkConstraint(c, it.response)));
  assert.equal(acc.instructions, 4);
  assert.equal(acc.instructionLevel, verdicts.filter(Boolean).length / 4);
  const promptsOk = items.filter((it) => it.task.constraints.every((c) => checkConstraint(c, it.response))).length;
  assert.equal(acc.promptLevel, promptsOk / 2);
  assert.equal(ifevalQuality(a, ''), a.constraints.filter((c) => checkConstraint(c, '')).length / 2);
});

test('a hand-made case: both constraints, one, none', () => {
  const task = { id: 't', request: 'Describe tea.', topic: 'tea', prompt: 'Describe tea. …', constraints: [{ kind: 'lowercase' as const }, { kind: 'bullets' as const, n: 2 }] };
  const acc = ifevalAccuracy([
    { task, response: '* green tea\n* black tea' },
    { task, response: '* Green tea\n* black tea' },
    { task, response: 'Tea.' },
  ]);
  assert.equal(acc.promptLevel, 1 / 3);
  assert.equal(acc.instructionLevel, 3 / 6);
  assert.deepEqual(acc.byKind, { lowercase: { followed: 1, total: 3 }, bullets: { followed: 2, total: 3 } });
});
