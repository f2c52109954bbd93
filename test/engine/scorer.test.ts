import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { ScorerCore } from '../../src/engine/scorer-core.ts';
import { buildTeacherForcedGraph } from '../../src/model/llama-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';

const dir = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);

test('scorer: the lm_head at response positions only gives the full teacher-forced log-probs there (≤ 1e-5), padding and empty responses included', async () => {
  const config = readHfConfig(join(dir('llama-gqa-untied'), 'config.json'));
  const { weights } = readSafetensorsDir(dir('llama-gqa-untied'));
  const items = [
    { promptTokenIds: [1, 17, 33, 5], responseTokenIds: [8, 9, 10, 11, 12] },
    { promptTokenIds: [1], responseTokenIds: [40] },
    { promptTokenIds: [1, 60, 61, 62, 63, 64, 65], responseTokenIds: [] },
    { promptTokenIds: [1, 90], responseTokenIds: [3, 70, 71, 2] },
  ];
  const scorer = await ScorerCore.create(config, weights);
  // one padded batch, and one item per batch: equal answers
  const together = await scorer.score(items, { maxBatchTokens: 4096 });
  const alone = await scorer.score(items, { maxBatchTokens: 1 });
  // reference: the full graph's log-probs of every position, one item at a time
  const full = await createSession(serializeModel(buildTeacherForcedGraph(config, weights)));
  for (const [i, it] of items.entries()) {
    const seq = [...it.promptTokenIds, ...it.responseTokenIds];
    const ids = { dtype: 'int64' as const, shape: [1, seq.length], data: BigInt64Array.from(seq.map(BigInt)) };
    const out = await runSession(full, { input_ids: ids, attention_mask: { ...ids, data: new BigInt64Array(seq.length).fill(1n) } });
    const expected = Array.from((out.log_probs.data as Float32Array).subarray(it.promptTokenIds.length - 1));
    for (const got of [together[i], alone[i]]) {
      assert.equal(got.tokenLogProbs.length, it.responseTokenIds.length, `item ${i}: one log-prob per response token`);
      got.tokenLogProbs.forEach((x, j) => assert.ok(Math.abs(x - expected[j]) <= 1e-5, `item ${i} token ${j}: ${x} vs ${expected[j]}`));
      assert.ok(Math.abs(got.logProb - expected.reduce((a, x) => a + x, 0)) <= 1e-4);
    }
  }
  assert.equal(together[2].logProb, 0);
  await scorer.release();
  await full.release();
});
