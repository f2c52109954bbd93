import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { fromFloat32, readSafetensorsDir, toFloat32, writeSafetensors } from '../../src/model/safetensors.ts';
import { buildDecodeStepGraph } from '../../src/model/llama-graph.ts';
import type { Weights } from '../../src/model/tensor.ts';
import { SamplerCore, type GenerateRequest } from '../../src/engine/sampler-core.ts';
import { ScorerCore } from '../../src/engine/scorer-core.ts';
import { serializeWithExternalWeights } from '../../src/engine/engine-weights.ts';

// Engines whose weights onnxruntime reads from the safetensors files (external data) must compute
// exactly what engines with the weights inline in the model compute.
const fixture = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'llama', name);
const load = (dir: string) => ({ config: readHfConfig(join(dir, 'config.json')), weights: readSafetensorsDir(dir).weights });
const prompts: GenerateRequest[] = [
  { promptId: 'a', promptTokenIds: [1, 17, 33, 5], k: 3, seed: 4 },
  { promptId: 'b', promptTokenIds: [1, 60, 61, 62, 63, 9], k: 2, seed: 4 },
];
const params = { temperature: 0.9, topP: 0.9, topK: 0, maxNewTokens: 10 };
const items = [{ promptTokenIds: [1, 5, 9], responseTokenIds: [11, 12, 13, 2] }, { promptTokenIds: [1], responseTokenIds: [40, 41] }];

for (const name of ['llama-gqa-untied', 'qwen2-bias-tied']) {
  test(`${name}: weights read from the files give the same samples and scores as inline weights`, async () => {
    const dir = fixture(name);
    const inline = load(dir);
    const external = load(dir);
    const s1 = await SamplerCore.create(inline.config, inline.weights);
    const s2 = await SamplerCore.create(external.config, external.weights, {}, true, dir);
    assert.equal(external.weights.size, 0, 'released');
    assert.deepEqual(await s2.generate(prompts, params), await s1.generate(prompts, params));
    const c1 = await ScorerCore.create(inline.config, inline.weights);
    const c2 = await ScorerCore.create(load(dir).config, load(dir).weights, {}, false, dir);
    assert.deepEqual(await c2.score(items), await c1.score(items));
    await Promise.all([s1.release(), s2.release(), c1.release(), c2.release()]);
  });
}

test('only matmul weights read unchanged (float32) from the files become references', () => {
  const dir = fixture('llama-gqa-untied');
  const { config, weights } = load(dir);
  const all = serializeWithExternalWeights(buildDecodeStepGraph(config, weights), weights, dir);
  // linear weights and the untied lm_head; not the embedding (Gather) nor the norms (Mul)
  const linear = [...weights.keys()].filter((n) => /_proj\.weight$|^lm_head\.weight$/.test(n)).sort();
  assert.ok(linear.length >= 8);
  assert.deepEqual([...all.external].sort(), linear);
  assert.deepEqual(all.configEntries, { 'session.model_external_initializers_file_folder_path': dir });
  // a weight changed in memory stays inline
  const changed: Weights = new Map(weights);
  const q = weights.get('model.layers.0.self_attn.q_proj.weight')!;
  changed.set('model.layers.0.self_attn.q_proj.weight', { ...q, data: Float32Array.from(q.data as Float32Array, (x) => x + 1) });
  const some = serializeWithExternalWeights(buildDecodeStepGraph(config, changed), changed, dir).external;
  assert.deepEqual([...some].sort(), linear.filter((n) => n !== 'model.layers.0.self_attn.q_proj.weight'));
});

test('bfloat16 files are converted and kept inline, with the same results as the inline path', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'dice-bf16-'));
  try {
    const src = load(fixture('llama-gqa-untied'));
    const bf16: Weights = new Map([...src.weights].map(([n, t]) => [n, fromFloat32(toFloat32(t), t.shape, 'bfloat16')]));
    writeSafetensors(join(tmp, 'model.safetensors'), bf16);
    copyFileSync(join(fixture('llama-gqa-untied'), 'config.json'), join(tmp, 'config.json'));
    const m = load(tmp);
    assert.deepEqual(serializeWithExternalWeights(buildDecodeStepGraph(m.config, m.weights), m.weights, tmp).external, []);
    const s1 = await SamplerCore.create(m.config, load(tmp).weights);
    const s2 = await SamplerCore.create(m.config, load(tmp).weights, {}, true, tmp);
    assert.deepEqual(await s2.generate(prompts, params), await s1.generate(prompts, params));
    await Promise.all([s1.release(), s2.release()]);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
