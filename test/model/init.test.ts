import test from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initNamedModel, initWeights, writeInitModel } from '../../src/model/init.ts';
import { llamaParameterShapes, loadModel, saveModel, validateWeights } from '../../src/model/load.ts';
import { NAMED_SHAPES, namedShape } from '../../src/model/named-shapes.ts';
import { encodeSafetensors, toFloat32, writeSafetensors } from '../../src/model/safetensors.ts';

function withTmp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'init-test-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function dirBytes(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f))]));
}

test('model init is seeded: same seed gives identical bytes, another seed different values', () => {
  const { config } = namedShape('tiny');
  const a = encodeSafetensors(initWeights(config, { seed: 7 }));
  const b = encodeSafetensors(initWeights(config, { seed: 7 }));
  const c = encodeSafetensors(initWeights(config, { seed: 8 }));
  assert.ok(Buffer.from(a).equals(Buffer.from(b)));
  assert.equal(a.length, c.length);
  assert.ok(!Buffer.from(a).equals(Buffer.from(c)));
});

test('init statistics: N(0, 0.02²) matrices, unit norms, zero biases', () => {
  const { config } = namedShape('tiny-qwen2');
  const weights = initWeights(config, { seed: 3 });
  assert.deepEqual([...weights.keys()].sort(), [...llamaParameterShapes(config).keys()].sort());
  const embed = toFloat32(weights.get('model.embed_tokens.weight')!);
  let m = 0;
  let v = 0;
  for (const x of embed) {
    m += x;
    v += x * x;
  }
  m /= embed.length;
  const std = Math.sqrt(v / embed.length - m * m);
  // 65536 draws: the std of the sample mean is 0.02/256 ≈ 8e-5; of the sample std ≈ 0.02/362 ≈ 6e-5.
  assert.ok(Math.abs(m) < 5e-4 && Math.abs(std - 0.02) < 5e-4, `mean ${m} std ${std}`);
  const within2 = embed.filter((x) => Math.abs(x) < 0.04).length / embed.length;
  assert.ok(Math.abs(within2 - 0.9545) < 0.01, `P(|x| < 2σ) = ${within2}`);
  assert.ok(toFloat32(weights.get('model.norm.weight')!).every((x) => x === 1));
  assert.ok(toFloat32(weights.get('model.layers.1.input_layernorm.weight')!).every((x) => x === 1));
  assert.ok(toFloat32(weights.get('model.layers.0.self_attn.k_proj.bias')!).every((x) => x === 0));
  const q = toFloat32(weights.get('model.layers.0.self_attn.q_proj.weight')!);
  const k = toFloat32(weights.get('model.layers.1.self_attn.q_proj.weight')!);
  assert.notDeepEqual(q.slice(0, 8), k.slice(0, 8), 'each tensor draws from its own stream');
  const bf16 = initWeights(config, { seed: 3, dtype: 'bfloat16' }).get('model.embed_tokens.weight')!;
  assert.equal(bf16.dtype, 'bfloat16');
  const widened = toFloat32(bf16);
  for (let i = 0; i < 100; i++) assert.ok(Math.abs(widened[i] - embed[i]) <= Math.abs(embed[i]) * 2 ** -8);
});

test('named shapes: exact SmolLM2-135M and Qwen2.5-0.5B hyper-parameters; tiny vocab is the tokenizer\'s', () => {
  assert.deepEqual(NAMED_SHAPES, ['tiny', 'tiny-qwen2', 'smollm2-135m', 'qwen2.5-0.5b']);
  const smol = namedShape('smollm2-135m').config;
  assert.deepEqual(
    [smol.architecture, smol.hiddenSize, smol.numLayers, smol.numHeads, smol.numKvHeads, smol.intermediateSize, smol.vocabSize, smol.tieWordEmbeddings, smol.ropeTheta, smol.rmsNormEps, smol.headDim],
    ['llama', 576, 30, 9, 3, 1536, 49152, true, 100000, 1e-5, 64],
  );
  const qwen = namedShape('qwen2.5-0.5b').config;
  assert.deepEqual(
    [qwen.architecture, qwen.hiddenSize, qwen.numLayers, qwen.numHeads, qwen.numKvHeads, qwen.intermediateSize, qwen.vocabSize, qwen.tieWordEmbeddings, qwen.ropeTheta, qwen.rmsNormEps, qwen.attentionBias],
    ['qwen2', 896, 24, 14, 2, 4864, 151936, true, 1e6, 1e-6, true],
  );
  let params = 0;
  for (const shape of llamaParameterShapes(smol).values()) params += shape.reduce((a, b) => a * b, 1);
  assert.equal(params, 134_515_008, 'SmolLM2-135M parameter count');
  params = 0;
  for (const shape of llamaParameterShapes(qwen).values()) params += shape.reduce((a, b) => a * b, 1);
  assert.equal(params, 494_032_768, 'Qwen2.5-0.5B parameter count');
  const tiny = namedShape('tiny');
  assert.equal(tiny.config.vocabSize, tiny.tokenizer.vocabSize);
  assert.equal(tiny.config.bosTokenId, tiny.tokenizer.bosTokenId);
  assert.ok(tiny.config.eosTokenIds.includes(tiny.tokenizer.eosTokenId!));
  assert.throws(() => namedShape('gpt5'), /unknown model shape "gpt5"; known: tiny, tiny-qwen2/);
});

test('an initialised model loads, and load → save reproduces every file byte for byte', () => {
  for (const arch of ['tiny', 'tiny-qwen2']) {
    withTmp((dir) => {
      const a = join(dir, 'a');
      const b = join(dir, 'b');
      const written = writeInitModel(arch, a, { seed: 11 });
      const model = loadModel(a);
      assert.deepEqual(model.config, written.config);
      assert.ok(model.chatTemplate, 'ships a chat template');
      assert.deepEqual([...model.weights.keys()].sort(), [...written.weights.keys()].sort());
      saveModel(b, { config: model.config, weights: model.weights, tokenizerFiles: model.tokenizer.files });
      const fa = dirBytes(a);
      const fb = dirBytes(b);
      assert.deepEqual([...fa.keys()], ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
      assert.deepEqual([...fb.keys()], [...fa.keys()]);
      for (const [f, bytes] of fa) assert.ok(bytes.equals(fb.get(f)!), `${arch}: ${f} differs after load → save`);
      assert.ok(Buffer.from(encodeSafetensors(written.weights, { format: 'pt' })).equals(fa.get('model.safetensors')!));
    });
  }
});

test('loadModel rejects weights that do not match the config, naming the directory and tensor', () => {
  const { config, weights, tokenizerFiles } = initNamedModel('tiny-qwen2', { seed: 1 });
  const missing = new Map(weights);
  missing.delete('model.layers.1.self_attn.v_proj.bias');
  assert.throws(() => validateWeights(config, missing, 'm'), /m: weights do not match config\.json \(qwen2, 2 layers\): missing tensor model\.layers\.1\.self_attn\.v_proj\.bias \[32\]/);
  const wrong = new Map(weights);
  wrong.set('model.norm.weight', { dtype: 'float32', shape: [63], data: new Float32Array(63) });
  assert.throws(() => validateWeights(config, wrong, 'm'), /model\.norm\.weight has shape \[63\], the config implies \[64\]/);
  const extra = new Map(weights);
  extra.set('model.layers.9.mlp.up_proj.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
  assert.throws(() => validateWeights(config, extra, 'm'), /unexpected tensor model\.layers\.9\.mlp\.up_proj\.weight/);
  const ints = new Map(weights);
  ints.set('model.norm.weight', { dtype: 'int32', shape: [64], data: new Int32Array(64) });
  assert.throws(() => validateWeights(config, ints, 'm'), /model\.norm\.weight has dtype int32/);

  withTmp((dir) => {
    saveModel(dir, { config, weights, tokenizerFiles });
    const cfgPath = join(dir, 'config.json');
    const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 3 }));
    assert.throws(() => loadModel(dir), new RegExp(`${dir}: weights do not match config\\.json \\(qwen2, 3 layers\\): missing tensor model\\.layers\\.2\\.`));
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, vocab_size: 100, architectures: undefined }));
    assert.throws(() => loadModel(dir), /model\.embed_tokens\.weight has shape \[1024,64\], the config implies \[100,64\]/);
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, architectures: ['GPT2LMHeadModel'], model_type: undefined }));
    assert.throws(() => loadModel(dir), new RegExp(`${cfgPath}: "architectures" names an unsupported architecture "GPT2LMHeadModel"`));
    const { hidden_size: _drop, ...noHidden } = cfg;
    writeFileSync(cfgPath, JSON.stringify(noHidden));
    assert.throws(() => loadModel(dir), new RegExp(`${cfgPath}: "hidden_size" is missing \\(required\\)`));
    writeFileSync(cfgPath, JSON.stringify(cfg));
    const st = join(dir, 'model.safetensors');
    const bytes = readFileSync(st);
    writeFileSync(st, bytes.subarray(0, bytes.length - 100));
    assert.throws(() => loadModel(dir), new RegExp(`${st}: invalid safetensors file: .*out of range`));
  });
  assert.throws(() => loadModel('/nonexistent/model'), /\/nonexistent\/model: model directory does not exist/);
});

test('loadModel reads a sharded checkpoint and takes eos from generation_config.json', () => {
  withTmp((dir) => {
    const single = join(dir, 'single');
    const sharded = join(dir, 'sharded');
    writeInitModel('tiny', single, { seed: 5 });
    writeInitModel('tiny', sharded, { seed: 5 });
    // Re-shard as transformers does: two files and an index naming each tensor's file.
    const { weights } = loadModel(single);
    const names = [...weights.keys()].sort();
    const shards = [names.slice(0, 7), names.slice(7)];
    const weightMap: Record<string, string> = {};
    shards.forEach((group, k) => {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      writeSafetensors(join(sharded, file), new Map(group.map((n) => [n, weights.get(n)!])), { format: 'pt' });
      for (const n of group) weightMap[n] = file;
    });
    rmSync(join(sharded, 'model.safetensors'));
    writeFileSync(join(sharded, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    writeFileSync(join(sharded, 'generation_config.json'), JSON.stringify({ eos_token_id: [1, 2, 4] }));
    const model = loadModel(sharded);
    assert.deepEqual(model.config.eosTokenIds, [1, 2, 4]);
    assert.ok(Buffer.from(encodeSafetensors(model.weights, { format: 'pt' })).equals(readFileSync(join(single, 'model.safetensors'))));
  });
});

test('loadModel: a tokenizer with more ids than the model vocab is an error', () => {
  withTmp((dir) => {
    const src = new URL('../fixtures/safetensors/sharded/', import.meta.url).pathname;
    for (const f of readdirSync(src)) copyFileSync(join(src, f), join(dir, f));
    writeFileSync(join(dir, 'tokenizer.json'), namedShape('tiny').tokenizer.files.tokenizerJson);
    assert.throws(() => loadModel(dir), /tokenizer\.json: the tokenizer has 1024 ids but config\.json vocab_size is 64/);
  });
});

test('`dice model init` writes the same loadable model as initNamedModel for that seed', () => {
  withTmp((dir) => {
    const out = join(dir, 'm');
    const bin = new URL('../../bin/dice.mjs', import.meta.url).pathname;
    const run = spawnSync(process.execPath, [bin, 'model', 'init', '--arch', 'tiny-qwen2', '--out', out, '--seed', '42'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /wrote .*tiny-qwen2 \(qwen2, 2 layers, hidden 64, vocab 1024\), 205,376 parameters, float32, seed 42/);
    const expected = initNamedModel('tiny-qwen2', { seed: 42 });
    assert.ok(readFileSync(join(out, 'model.safetensors')).equals(Buffer.from(encodeSafetensors(expected.weights, { format: 'pt' }))));
    assert.deepEqual(loadModel(out).config, expected.config);
    const bad = spawnSync(process.execPath, [bin, 'model', 'init', '--arch', 'gpt5', '--out', out], { encoding: 'utf8' });
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /unknown model shape "gpt5"/);
  });
});
