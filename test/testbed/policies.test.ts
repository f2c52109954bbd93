import test from 'node:test';
import assert from 'node:assert/strict';
import { makeOfflinePairs, makeSftExamples } from '../../src/testbed/offline.ts';
import { BEHAVIOUR_POLICIES, makeBehaviourPolicy, miscopy, partialAnswer } from '../../src/testbed/policies.ts';
import { quality } from '../../src/testbed/quality.ts';
import { referenceResponse } from '../../src/testbed/reference.ts';
import { makeTaskSet } from '../../src/testbed/tasks.ts';
import { ARENA_ALPHABET } from '../../src/testbed/text.ts';
import { deriveSeed, Rng } from '../../src/util/random.ts';

const tasks = makeTaskSet({ seed: 1, count: 1000, split: 'train' });

test('policies answer right / partly / wrong at their stated rates; filler only adds length', () => {
  const spec = { name: 't', pCorrect: 0.6, pPartial: 0.25, filler: [1, 0, 0] as const };
  const terse = makeBehaviourPolicy(spec);
  const chatty = makeBehaviourPolicy({ ...spec, filler: [0, 0, 1] });
  const rng = new Rng(1);
  const responses = tasks.map((t) => terse(t, rng));
  const qs = tasks.map((t, i) => quality(t, responses[i]));
  const right = qs.filter((q) => q === 1).length / qs.length;
  const partly = qs.filter((q) => q > 0 && q < 1).length / qs.length;
  assert.ok(Math.abs(right - 0.6) < 0.05, `right ${right}`);
  assert.ok(partly > 0.15 && partly < 0.35, `partly ${partly}`); // near misses, plus the odd wrong answer that lands close
  let extra = 0;
  for (const t of tasks.slice(0, 200)) {
    // Same per-prompt stream: the answer is drawn before the filler, so only the filler differs.
    const a = terse(t, new Rng(deriveSeed(2, t.id)));
    const b = chatty(t, new Rng(deriveSeed(2, t.id)));
    assert.equal(quality(t, a), quality(t, b), `${a} vs ${b}`);
    extra += b.length - a.length;
  }
  assert.ok(extra / 200 > 20, `filler adds ${extra / 200} chars`);
});

test('near misses are the model-like slips: one letter miscopied from the same word (in the answer\'s case), a count off by one', () => {
  const rng = new Rng(5);
  for (const t of tasks.slice(0, 300)) {
    const p = partialAnswer(t, rng);
    assert.notEqual(p, t.answer);
    if (t.family === 'count' || t.family === 'add') {
      assert.equal(Math.abs(Number(p) - Number(t.answer)), 1, `${t.prompt}: ${p}`);
      continue;
    }
    assert.equal(p.length, t.answer.length);
    const diff = [...p].map((c, i) => [c, t.answer[i]]).filter(([a, b]) => a !== b);
    assert.equal(diff.length, 1, `${t.answer} → ${p}`);
    const letters = new Set(t.answer);
    if (letters.size > 1) assert.ok(letters.has(diff[0][0]), `${t.answer} → ${p}: the new letter comes from the word`);
    if (t.family === 'upper') assert.equal(p, p.toUpperCase());
  }
  // Several letters: that many distinct positions change.
  const two = miscopy('TAMOKE', 2, new Rng(9), true);
  assert.equal([...two].filter((c, i) => c !== 'TAMOKE'[i]).length, 2, two);
  assert.equal(miscopy('aaa', 1, new Rng(1), false).length, 3);
  assert.notEqual(miscopy('aaa', 1, new Rng(1), false), 'aaa');
});

test('every response and reference fits the arena: ≤ 60 chars, small alphabet', () => {
  const alphabet = new Set(ARENA_ALPHABET);
  const rng = new Rng(3);
  const policies = BEHAVIOUR_POLICIES.map(makeBehaviourPolicy);
  for (const t of tasks) {
    for (const text of [...policies.map((p) => p(t, rng)), referenceResponse(t, 9)]) {
      assert.ok(text.length <= 60, text);
      for (const c of text) assert.ok(alphabet.has(c), `${JSON.stringify(c)} in ${text}`);
    }
  }
});

test('references are decent, medium-length and fixed per prompt', () => {
  const refs = tasks.map((t) => referenceResponse(t, 4));
  const meanQ = refs.reduce((s, r, i) => s + quality(tasks[i], r), 0) / refs.length;
  assert.ok(meanQ > 0.8 && meanQ < 0.98, `reference quality ${meanQ}`);
  assert.equal(referenceResponse(tasks[5], 4), refs[5]);
  assert.throws(() => makeBehaviourPolicy({ name: 'bad', pCorrect: 0.9, pPartial: 0.2, filler: [1, 0, 0] }), /policy 'bad'/);
});

test('D_offline: judged pairs favour quality and — the judge’s bias — length; same seed, same set', () => {
  const pairs = makeOfflinePairs(tasks, { seed: 7 });
  assert.ok(pairs.length > 950);
  const byId = new Map(tasks.map((t) => [t.id, t]));
  let dq = 0;
  let dl = 0;
  for (const p of pairs) {
    const t = byId.get(p.promptId)!;
    assert.notEqual(p.chosen, p.rejected);
    dq += quality(t, p.chosen) - quality(t, p.rejected);
    dl += p.chosen.length - p.rejected.length;
  }
  assert.ok(dq / pairs.length > 0.2, `mean quality gap ${dq / pairs.length}`);
  assert.ok(dl / pairs.length > 3, `mean length gap ${dl / pairs.length}`);
  assert.deepEqual(makeOfflinePairs(tasks.slice(0, 50), { seed: 7 }), pairs.slice(0, 50));
  const sft = makeSftExamples(tasks.slice(0, 20), { seed: 7, perTask: 2 });
  assert.equal(sft.length, 40);
  assert.deepEqual(makeSftExamples(tasks.slice(0, 20), { seed: 7, perTask: 2 }), sft);
  assert.ok(new Set(sft.map((e) => e.policy)).size > 1);
});
