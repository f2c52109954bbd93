import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { SamplerCore, type GenerateParams, type GenerateRequest } from '../../src/engine/sampler-core.ts';
import { ScorerCore } from '../../src/engine/scorer-core.ts';
import { Sampler } from '../../src/engine/sampler.ts';
import { Scorer } from '../../src/engine/scorer.ts';
import { argmax } from '../../src/engine/sampling.ts';
import { buildTeacherForcedGraph } from '../../src/model/llama-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';

// Tiny random models from tools/llama_fixtures.py (vocab 96, 64 positions; no tokenizer).
const dir = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);
const load = (name: string) => ({ config: readHfConfig(join(dir(name), 'config.json')), weights: readSafetensorsDir(dir(name)).weights });

const prompts: GenerateRequest[] = [
  { promptId: 'a', promptTokenIds: [1, 17, 33, 5], k: 4, seed: 42 },
  { promptId: 'b', promptTokenIds: [1, 60, 61, 62, 63, 64, 65, 9], k: 3, seed: 42 },
  { promptId: 'c', promptTokenIds: [1], k: 5, seed: 42 },
  { promptId: 'd', promptTokenIds: [1, 90, 3], k: 2, seed: 42 },
];
// Several EOS ids so that some samples stop early and the batch shrinks and refills.
const params: GenerateParams = { temperature: 0.9, topP: 0.95, topK: 50, maxNewTokens: 12, eosTokenIds: [2, 3, 4, 5, 6, 7] };

test('same seed → same samples, whatever the batching and request order', async () => {
  const { config, weights } = load('llama-gqa-untied');
  const s = await SamplerCore.create(config, weights);
  const wide = await s.generate(prompts, params);
  const narrow = await s.generate([...prompts].reverse(), { ...params, maxBatchRows: 5 });
  narrow.reverse();
  assert.deepEqual(narrow.map((r) => r.promptId), wide.map((r) => r.promptId));
  wide.forEach((r, i) => {
    assert.equal(r.samples.length, prompts[i].k);
    r.samples.forEach((smp, j) => {
      assert.deepEqual(narrow[i].samples[j].tokenIds, smp.tokenIds);
      assert.ok(Math.abs(narrow[i].samples[j].logProb - smp.logProb) < 1e-4);
    });
  });
  const again = await s.generate(prompts, params);
  assert.deepEqual(again, wide);
  const reasons = wide.flatMap((r) => r.samples.map((x) => x.finishReason));
  assert.ok(reasons.includes('eos') && reasons.includes('length'), `both finish reasons occur: ${reasons}`);
  for (const smp of wide.flatMap((r) => r.samples)) {
    if (smp.finishReason === 'eos') assert.ok(params.eosTokenIds!.includes(smp.tokenIds.at(-1)!));
    else {
      assert.equal(smp.tokenIds.length, params.maxNewTokens);
      assert.ok(!smp.tokenIds.some((t) => params.eosTokenIds!.includes(t)));
    }
  }
  await s.release();
});

test('different k and different seeds give different samples', async () => {
  const { config, weights } = load('llama-gqa-untied');
  const s = await SamplerCore.create(config, weights);
  const p = { ...params, eosTokenIds: [2], maxNewTokens: 10 };
  const [r] = await s.generate([{ promptId: 'x', promptTokenIds: [1, 20, 21], k: 8, seed: 1 }], p);
  const distinct = new Set(r.samples.map((x) => x.tokenIds.join(',')));
  assert.equal(distinct.size, 8);
  assert.deepEqual(r.samples.map((x) => x.k), [0, 1, 2, 3, 4, 5, 6, 7]);
  const [other] = await s.generate([{ promptId: 'x', promptTokenIds: [1, 20, 21], k: 8, seed: 2 }], p);
  assert.notDeepEqual(other.samples.map((x) => x.tokenIds), r.samples.map((x) => x.tokenIds));
  await s.release();
});

for (const name of ['llama-gqa-untied', 'llama3-scaled-tied', 'qwen2-bias-tied']) {
  test(`${name}: the sampler's recorded log-probs equal the scorer's (≤ 1e-4 per sequence)`, async () => {
    const { config, weights } = load(name);
    const sampler = await SamplerCore.create(config, weights);
    const scorer = await ScorerCore.create(config, weights);
    const results = await sampler.generate(prompts, { ...params, maxBatchRows: 6 });
    const flat = results.flatMap((r, i) => r.samples.map((smp) => ({ promptTokenIds: prompts[i].promptTokenIds, responseTokenIds: smp.tokenIds, logProb: smp.logProb })));
    const scored = await scorer.score(flat, { maxBatchTokens: 64 });
    let maxErr = 0;
    flat.forEach((f, i) => (maxErr = Math.max(maxErr, Math.abs(f.logProb - scored[i].logProb))));
    assert.ok(maxErr <= 1e-4, `max |Δ log-prob| = ${maxErr}`);
    assert.ok(flat.every((f) => f.logProb < 0));
    await sampler.release();
    await scorer.release();
  });
}

test('greedy decoding follows the argmax of the teacher-forced model', async () => {
  const { config, weights } = load('qwen2-bias-tied');
  const sampler = await SamplerCore.create(config, weights);
  const scorer = await ScorerCore.create(config, weights);
  const [r] = await sampler.generate([{ promptId: 'g', promptTokenIds: [1, 40, 41], k: 1, seed: 0 }], { ...params, temperature: 0, eosTokenIds: [] });
  const toks = r.samples[0].tokenIds;
  assert.equal(toks.length, params.maxNewTokens);
  const prompt = [1, 40, 41];
  const full = [...prompt, ...toks];
  const tf = await createSession(serializeModel(buildTeacherForcedGraph(config, weights, { logits: true })));
  const ids = { dtype: 'int64' as const, shape: [1, full.length], data: BigInt64Array.from(full.map(BigInt)) };
  const out = await runSession(tf, { input_ids: ids, attention_mask: { ...ids, data: new BigInt64Array(full.length).fill(1n) } });
  const V = config.vocabSize;
  toks.forEach((t, j) => {
    const row = (out.logits.data as Float32Array).subarray((prompt.length - 1 + j) * V, (prompt.length + j) * V);
    assert.equal(t, argmax(row), `greedy token ${j}`);
  });
  const [sc] = await scorer.score([{ promptTokenIds: prompt, responseTokenIds: toks }]);
  assert.ok(Math.abs(sc.logProb - r.samples[0].logProb) < 1e-4);
  await sampler.release();
  await scorer.release();
});

test('an oversized or invalid prompt fails alone, with a clear error', async () => {
  const { config, weights } = load('llama-gqa-untied');
  const s = await SamplerCore.create(config, weights);
  const long = Array.from({ length: 60 }, (_, i) => 10 + i);
  const res = await s.generate(
    [
      { promptId: 'long', promptTokenIds: long, k: 2, seed: 1 },
      { promptId: 'ok', promptTokenIds: [1, 2], k: 2, seed: 1 },
      { promptId: 'bad', promptTokenIds: [1, 500], k: 2, seed: 1 },
    ],
    { ...params, maxNewTokens: 8 },
  );
  assert.match(res[0].error!, /prompt long: 60 prompt tokens \+ 8 new tokens exceed the model's 64 positions \(at most 56 prompt tokens\)/);
  assert.equal(res[0].samples.length, 0);
  assert.equal(res[1].error, undefined);
  assert.equal(res[1].samples.length, 2);
  assert.match(res[2].error!, /token id 500 is outside the vocabulary/);
  await s.release();
});

test('Sampler and Scorer in worker threads give the in-thread results', async () => {
  const model = load('llama3-scaled-tied');
  const core = await SamplerCore.create(model.config, model.weights);
  const expected = await core.generate(prompts.slice(0, 2), params);
  await core.release();
  const sampler = await Sampler.open({ model: load('llama3-scaled-tied'), threads: 1 });
  const scorer = await Scorer.open({ model: load('llama3-scaled-tied'), threads: 1 });
  try {
    assert.equal(sampler.config.vocabSize, 96);
    const got = await sampler.generate(prompts.slice(0, 2), params);
    got.forEach((r, i) => {
      assert.deepEqual(r.promptTokenIds, prompts[i].promptTokenIds);
      assert.deepEqual(r.samples.map((x) => x.tokenIds), expected[i].samples.map((x) => x.tokenIds));
      assert.ok(r.samples.every((x) => x.text === null)); // no tokenizer in this fixture
    });
    const scored = await scorer.score(got[0].samples.map((x) => ({ promptTokenIds: prompts[0].promptTokenIds, responseTokenIds: x.tokenIds })));
    scored.forEach((sc, j) => assert.ok(Math.abs(sc.logProb - got[0].samples[j].logProb) <= 1e-4));
    await assert.rejects(scorer.score([{ prompt: 'text', response: 'x' }]), /needs a tokenizer/);
    const [textReq] = await sampler.generate([{ promptId: 't', prompt: 'hello', k: 1, seed: 1 }]);
    assert.match(textReq.error!, /needs a tokenizer/);
  } finally {
    await sampler.close();
    await scorer.close();
  }
});
