import test from 'node:test';
import assert from 'node:assert/strict';
import { makeArenaSplits, makeTaskSet, TASK_FAMILIES, type ArenaTask } from '../../src/testbed/tasks.ts';
import { ARENA_ALPHABET } from '../../src/testbed/text.ts';

/** Recomputes the answer from the prompt text alone. */
function solve(t: ArenaTask): string {
  let m: RegExpMatchArray | null;
  if ((m = t.prompt.match(/^reverse the word ([a-z]+)$/))) return [...m[1]].reverse().join('');
  if ((m = t.prompt.match(/^uppercase the word ([a-z]+)$/))) return m[1].toUpperCase();
  if ((m = t.prompt.match(/^count the letter ([a-z]) in ([a-z]+)$/))) return String(m[2].split(m[1]).length - 1);
  if ((m = t.prompt.match(/^add (\d+) and (\d+)$/))) return String(Number(m[1]) + Number(m[2]));
  if ((m = t.prompt.match(/^([a-z])=([a-z]+), ([a-z])=([a-z]+), ([a-z])=([a-z]+)\. what is ([a-z])\?$/))) {
    return m[2 * [m[1], m[3], m[5]].indexOf(m[7]) + 2];
  }
  throw new Error(`unparsable prompt ${t.prompt}`);
}

test('every family yields short prompts in the small alphabet whose answer checks out', () => {
  const tasks = makeTaskSet({ seed: 3, count: 1000, split: 'train' });
  const alphabet = new Set(ARENA_ALPHABET);
  for (const f of TASK_FAMILIES) assert.equal(tasks.filter((t) => t.family === f).length, 200);
  for (const t of tasks) {
    assert.equal(t.answer, solve(t), t.prompt);
    assert.ok(t.prompt.length <= 40, t.prompt);
    assert.ok(t.answer.length <= 8, t.answer);
    for (const c of t.prompt + t.answer) assert.ok(alphabet.has(c), `${JSON.stringify(c)} in ${t.prompt}`);
  }
  assert.equal(new Set(tasks.map((t) => t.prompt)).size, tasks.length, 'prompts are distinct');
  assert.ok(tasks.some((t) => t.family === 'count' && t.answer === '0') && tasks.some((t) => t.family === 'count' && Number(t.answer) >= 2));
});

test('splits are seeded and disjoint', () => {
  const a = makeArenaSplits({ seed: 11, trainSize: 300, evalSize: 100 });
  const b = makeArenaSplits({ seed: 11, trainSize: 300, evalSize: 100 });
  const c = makeArenaSplits({ seed: 12, trainSize: 300, evalSize: 100 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.eval, c.eval);
  const evalPrompts = new Set(a.eval.map((t) => t.prompt));
  assert.ok(a.train.every((t) => !evalPrompts.has(t.prompt)));
  assert.equal(a.eval[0].id, 'eval-0');
  assert.equal(a.train[299].id, 'train-299');
  const onlyAdd = makeTaskSet({ seed: 1, count: 10, split: 'x', families: ['add'] });
  assert.ok(onlyAdd.every((t) => t.family === 'add'));
  assert.throws(() => makeTaskSet({ seed: 1, count: 1, split: 'x', families: ['nope' as never] }), /unknown family 'nope'/);
});
