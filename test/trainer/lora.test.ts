import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensors, readSafetensorsDir } from '../../src/model/safetensors.ts';
import { buildTeacherForcedGraph, llamaParameterShapes, toFloat } from '../../src/model/llama-graph.ts';
import {
  ADAPTER_CONFIG_FILE,
  adapterBaseDir,
  initAdapter,
  loraParameterShapes,
  mergeAdapter,
  readAdapter,
  writeAdapter,
  type LoraConfig,
} from '../../src/model/lora.ts';
import { parseLoraFlag } from '../../src/cli/lora-flag.ts';
import { loadRunConfig } from '../../src/config/schema.ts';
import { loraInitializers } from '../../src/model/lora-graph.ts';
import { serializeModel } from '../../src/onnx/builder.ts';
import { createSession, runSession } from '../../src/onnx/session.ts';
import { accName, buildGradsGraph, gradName } from '../../src/engine/trainer-graph.ts';
import { collateRows, preferenceRows, type PreferencePair } from '../../src/engine/trainer-batch.ts';
import { TrainerCore } from '../../src/engine/trainer-core.ts';
import type { HostTensor, Weights } from '../../src/model/tensor.ts';
import { Rng } from '../../src/util/random.ts';

// Reference: test/fixtures/lora/<model>/, made by tools/lora_fixtures.py with PyTorch + peft 0.21
// (peft's own save_pretrained adapter, autograd gradients of the LoRA tensors, torch.optim.AdamW
// after clip_grad_norm_(1.0)); the base models are test/fixtures/train/<model>/model.
interface Expected {
  beta: number;
  lr: number;
  weight_decay: number;
  max_grad_norm: number;
  r: number;
  alpha: number;
  input_ids: number[][];
  response_mask: number[][];
  ref_logps: number[];
  policy_logps: number[];
  loss: number;
  grad_norm: number;
  base_parameters_with_grad: number;
  lora_tensors: string[];
}

const fixtureDir = (name: string) => join(import.meta.dirname, '..', 'fixtures', 'lora', name);

function load(name: string) {
  const dir = fixtureDir(name);
  const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected;
  const adapterDir = join(dir, 'adapter');
  const baseDir = adapterBaseDir(adapterDir, readAdapter(adapterDir).baseModel);
  const config = readHfConfig(join(baseDir, 'config.json'));
  const weights = readSafetensorsDir(baseDir).weights;
  if (config.tieWordEmbeddings) weights.delete('lm_head.weight');
  const adapter = readAdapter(adapterDir, config); // validates names and shapes against the model
  const P = expected.input_ids.length / 2;
  const split = (i: number) => {
    const first = expected.response_mask[i].indexOf(1);
    const count = expected.response_mask[i].reduce((a, b) => a + b, 0);
    return { prompt: expected.input_ids[i].slice(0, first + 1), response: expected.input_ids[i].slice(first + 1, first + 1 + count) };
  };
  const pairs: PreferencePair[] = Array.from({ length: P }, (_, i) => ({
    promptTokenIds: split(i).prompt,
    chosenTokenIds: split(i).response,
    rejectedTokenIds: split(P + i).response,
    refChosenLogp: expected.ref_logps[i],
    refRejectedLogp: expected.ref_logps[P + i],
  }));
  return { expected, config, weights, adapter, pairs, grads: readSafetensors(join(dir, 'grads.safetensors')).weights, after: readSafetensors(join(dir, 'after.safetensors')).weights };
}

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < expected.length; i++) {
    d += (actual[i] - expected[i]) ** 2;
    r += expected[i] ** 2;
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(r), 1e-30);
}

const f32 = (t: HostTensor) => t.data as Float32Array;

test('--lora flag: parsed into the schema, bad values refused naming the problem', () => {
  assert.deepEqual(parseLoraFlag('r=16,alpha=32,targets=q,k,v,o,gate,up,down'), { r: 16, alpha: 32, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] });
  assert.deepEqual(parseLoraFlag('targets=q_proj,v_proj,r=8,alpha=16,dropout=0'), { r: 8, alpha: 16, targets: ['q', 'v'], dropout: 0 });
  assert.throws(() => parseLoraFlag('r=16,alpha=32,targets=q,lm_head'), /targets/);
  assert.throws(() => parseLoraFlag('r=0,alpha=32,targets=q'), /r:/);
  assert.throws(() => parseLoraFlag('r=16,alpha=32,targets=q,dropout=0.1'), /dropout 0/);
  assert.throws(() => parseLoraFlag('r=16,rank=3,targets=q'), /rank/);
  assert.throws(() => parseLoraFlag('r=16,targets=q'), /alpha/);
  assert.throws(() => parseLoraFlag('16,alpha=2,targets=q'), /"16" \(not key=value\)/);
  // the same rule validates the config key, as an object or as the flag's string
  assert.deepEqual(loadRunConfig(undefined, { 'train.lora': 'r=4,alpha=8,targets=q,v' }).train.lora, { r: 4, alpha: 8, targets: ['q', 'v'] });
  assert.equal(loadRunConfig(undefined, {}).train.lora, null);
  assert.throws(() => loadRunConfig(undefined, { 'train.lora': { r: 4, alpha: 8, targets: ['x'] } }), /train\.lora\.targets/);
});

for (const name of ['tiny-llama', 'tiny-qwen2']) {
  test(`${name}: peft's adapter loads; base (adapter off) and policy log-probs, DPO loss and every LoRA gradient match peft (≤ 1e-4)`, async () => {
    const { expected, config, weights, adapter, pairs, grads } = load(name);
    assert.deepEqual(adapter.lora, { r: expected.r, alpha: expected.alpha, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] });
    assert.deepEqual([...adapter.weights.keys()].sort(), expected.lora_tensors);
    const g = buildGradsGraph({ config, dtype: 'float32', loss: 'dpo', beta: expected.beta, lora: adapter.lora });
    // frozen base: its weights are inputs, and nothing of theirs is an output
    const outputs = g.outputs.map((o) => o.name);
    assert.deepEqual(outputs.filter((o) => o.startsWith('grad.')).sort(), expected.lora_tensors.map(gradName).sort());
    for (const w of llamaParameterShapes(config).keys()) assert.ok(g.inputs.some((i) => i.name === w), `${w} is an input`);
    const session = await createSession(serializeModel(g));
    const c = collateRows(preferenceRows(pairs), 'float32');
    const out = await runSession(session, {
      ...Object.fromEntries(weights),
      ...Object.fromEntries(adapter.weights),
      input_ids: c.input_ids,
      attention_mask: c.attention_mask,
      response_mask: c.response_mask,
      loss_weight: { dtype: 'float32', shape: [], data: Float32Array.of(1 / pairs.length) },
      ref_logps: { dtype: 'float32', shape: [2 * pairs.length], data: Float32Array.from(expected.ref_logps) },
    });
    assert.ok(Math.abs((out.loss.data[0] as number) - expected.loss) / expected.loss <= 1e-4, `loss ${out.loss.data[0]} vs ${expected.loss}`);
    assert.ok(relError(f32(out.policy_logps), expected.policy_logps) <= 1e-4);
    assert.equal(expected.base_parameters_with_grad, 0);
    for (const [param, ref] of grads) {
      const rel = relError(f32(out[gradName(param)]), f32(ref));
      assert.ok(rel <= 1e-4, `${param}: gradient relative error ${rel.toExponential(2)}`);
    }
    // the trainer's reference is the same weights with the adapter off
    const trainer = new TrainerCore(config, weights, { loss: 'dpo', beta: expected.beta, lr: expected.lr, warmupSteps: 0, lora: { config: adapter.lora, adapter: adapter.weights } });
    const rows = preferenceRows(pairs);
    assert.ok(relError(await trainer.baseLogps(rows), expected.ref_logps) <= 1e-5, 'base log-probs = peft disable_adapter()');
    assert.ok(relError(await trainer.policyLogps(rows), expected.policy_logps) <= 1e-5, 'policy log-probs = peft forward');
    await trainer.release();
  });

  for (const microBatch of [undefined, 1]) {
    test(`${name}: a LoRA DPO step (clip 1.0, weight decay) matches peft + torch.optim.AdamW; the base is untouched${microBatch ? ' (3 micro-batches)' : ''}`, async () => {
      const { expected, config, weights, adapter, pairs, after } = load(name);
      const baseCopy = new Map([...weights].map(([n, t]) => [n, f32(t).slice()]));
      const trainer = new TrainerCore(config, weights, {
        loss: 'dpo',
        beta: expected.beta,
        lr: expected.lr,
        warmupSteps: 0,
        adamw: { weightDecay: expected.weight_decay, maxGradNorm: expected.max_grad_norm },
        microBatch,
        lora: { config: adapter.lora, adapter: adapter.weights },
      });
      const m = await trainer.step({ kind: 'preference', pairs });
      assert.ok(Math.abs(m.loss - expected.loss) / expected.loss <= 1e-4, `loss ${m.loss} vs ${expected.loss}`);
      assert.ok(Math.abs(m.gradNorm - expected.grad_norm) / expected.grad_norm <= 1e-4, `grad norm ${m.gradNorm} vs ${expected.grad_norm}`);
      const now = trainer.adapter()!.weights;
      for (const [param, ref] of after) {
        const before = f32(adapter.weights.get(param)!);
        const rel = relError(f32(now.get(param)!).map((x, i) => x - before[i]), f32(ref).map((x, i) => x - before[i]));
        assert.ok(rel <= 1e-4, `${param}: update relative error ${rel.toExponential(2)}`);
      }
      for (const [n, t] of weights) assert.deepEqual(f32(t), baseCopy.get(n), `${n} changed`);
      // optimizer state exists for the adapter only
      const state = trainer.state();
      assert.deepEqual([...state.m.keys()].sort(), expected.lora_tensors);
      await trainer.release();
    });
  }

  test(`${name}: merged weights (W + alpha/r·B·A) give peft's adapted log-probs; our adapter round-trips in PEFT's format`, async () => {
    const { expected, config, weights, adapter, pairs } = load(name);
    const merged = mergeAdapter(config, weights, adapter);
    const session = await createSession(serializeModel(buildTeacherForcedGraph(config, merged)));
    const c = collateRows(preferenceRows(pairs), 'float32');
    const out = await runSession(session, { input_ids: c.input_ids, attention_mask: c.attention_mask });
    const lp = f32(out.log_probs);
    const T1 = expected.response_mask[0].length;
    const seq = expected.response_mask.map((mask, i) => mask.reduce((s, m, t) => s + m * lp[i * T1 + t], 0));
    assert.ok(relError(seq, expected.policy_logps) <= 1e-5, `merged ${seq} vs peft ${expected.policy_logps}`);
    // the other way to run it: the base's graph with the adapter's terms (bench/lora-engines.ts compares their speed)
    const unmerged = await createSession(serializeModel(buildTeacherForcedGraph(config, weights, { adapter: loraInitializers(config, adapter) })));
    const lp2 = f32((await runSession(unmerged, { input_ids: c.input_ids, attention_mask: c.attention_mask })).log_probs);
    const seq2 = expected.response_mask.map((mask, i) => mask.reduce((s, m, t) => s + m * lp2[i * T1 + t], 0));
    assert.ok(relError(seq2, expected.policy_logps) <= 1e-5, `base + adapter ${seq2} vs peft ${expected.policy_logps}`);

    const dir = mkdtempSync(join(tmpdir(), 'dice-lora-'));
    try {
      writeAdapter(dir, { ...adapter, baseModel: '/models/base' });
      const json = JSON.parse(readFileSync(join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
      assert.equal(json.peft_type, 'LORA');
      assert.equal(json.lora_alpha, expected.alpha);
      assert.equal(json.task_type, 'CAUSAL_LM');
      const back = readAdapter(dir, config);
      assert.deepEqual(back.lora, adapter.lora);
      assert.equal(back.baseModel, '/models/base');
      for (const [n, t] of adapter.weights) assert.deepEqual(f32(back.weights.get(n)!), f32(t));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('adapter_config.json: unsupported PEFT variants are refused naming the key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-lora-'));
  try {
    const base = JSON.parse(readFileSync(join(fixtureDir('tiny-llama'), 'adapter', ADAPTER_CONFIG_FILE), 'utf8'));
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ use_dora: true }, /"use_dora"/],
      [{ use_rslora: true }, /"use_rslora"/],
      [{ peft_type: 'IA3' }, /"peft_type"/],
      [{ target_modules: ['q_proj', 'lm_head'] }, /module lm_head/],
      [{ rank_pattern: { q_proj: 8 } }, /"rank_pattern"/],
      [{ layers_to_transform: [0] }, /"layers_to_transform"/],
      [{ bias: 'all' }, /"bias"/],
    ];
    for (const [patch, error] of cases) {
      writeFileSync(join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ ...base, ...patch }));
      assert.throws(() => readAdapter(dir), error);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('LoRA gradients of every adapter tensor match central finite differences on float64 (gemm and matmul linears)', async () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'llama', 'qwen2-bias-tied');
  const config = readHfConfig(join(dir, 'config.json'));
  const weights = readSafetensorsDir(dir).weights;
  const lora: LoraConfig = { r: 2, alpha: 6, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] };
  const rng = new Rng(5);
  const adapter: Weights = new Map();
  for (const [n, shape] of loraParameterShapes(config, lora)) adapter.set(n, { dtype: 'float64', shape, data: Float64Array.from({ length: shape[0] * shape[1] }, () => 0.3 * rng.normal()) });
  assert.equal(initAdapter(config, lora).size, adapter.size);
  for (const linear of ['gemm', 'matmul'] as const) {
    const g = buildGradsGraph({ config, dtype: 'float64', loss: 'dpo', beta: 0.5, maxPositions: 16, linear, lora });
    const session = await createSession(serializeModel(g), { optimization: 'basic' });
    const [N, T] = [4, 6];
    const ids = Array.from({ length: N * T }, () => BigInt(3 + Math.floor(rng.next() * 90)));
    const feeds: Record<string, HostTensor> = {
      input_ids: { dtype: 'int64', shape: [N, T], data: BigInt64Array.from(ids) },
      attention_mask: { dtype: 'int64', shape: [N, T], data: BigInt64Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0].map(BigInt)) },
      response_mask: { dtype: 'float64', shape: [N, T - 1], data: Float64Array.from([0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1]) },
      loss_weight: { dtype: 'float64', shape: [], data: Float64Array.of(1 / 2) },
      ref_logps: { dtype: 'float64', shape: [N], data: Float64Array.of(-14, -15.5, -13.2, -16) },
    };
    for (const [n, t] of weights) feeds[n] = toFloat(t, 'float64');
    for (const [n, t] of adapter) feeds[n] = { ...t, data: (t.data as Float64Array).slice() };
    const out = await runSession(session, feeds);
    const lossAt = async () => (await runSession(session, feeds, ['loss'])).loss.data[0] as number;
    const h = 1e-5;
    for (const name of adapter.keys()) {
      const data = feeds[name].data as Float64Array;
      const orig = Float64Array.from(data);
      const dir = Float64Array.from(data, () => rng.normal());
      const analytic = (out[gradName(name)].data as Float64Array).reduce((s, gi, i) => s + gi * dir[i], 0);
      data.forEach((_, i) => (data[i] = orig[i] + h * dir[i]));
      const plus = await lossAt();
      data.forEach((_, i) => (data[i] = orig[i] - h * dir[i]));
      const minus = await lossAt();
      data.set(orig);
      const numeric = (plus - minus) / (2 * h);
      const rel = Math.abs(analytic - numeric) / Math.max(Math.abs(numeric), 1e-9);
      assert.ok(rel <= 1e-5, `${linear} ${name}: directional derivative ${analytic} vs finite difference ${numeric} (relative error ${rel.toExponential(2)})`);
      assert.ok(Math.abs(numeric) > 1e-9, `${name}: the loss does not depend on it`);
    }
  }
});

test('LoRA grads graph: gradients and accumulators for the adapter only; the base weights are inputs; contrib kernels in float32', () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'llama', 'qwen2-bias-tied');
  const config = readHfConfig(join(dir, 'config.json'));
  const lora: LoraConfig = { r: 2, alpha: 4, targets: ['q', 'v'] };
  const adapterNames = [...loraParameterShapes(config, lora).keys()].sort();
  const g = buildGradsGraph({ config, dtype: 'float32', loss: 'dpo', beta: 0.1, lora }, { accumulate: true });
  const inputs = g.inputs.map((i) => i.name);
  assert.deepEqual(inputs.filter((n) => n.startsWith('acc.')).sort(), adapterNames.map(accName).sort());
  assert.deepEqual(g.outputs.map((o) => o.name).filter((n) => n.startsWith('grad.')).sort(), adapterNames.map(gradName).sort());
  for (const w of llamaParameterShapes(config).keys()) assert.ok(inputs.includes(w), `${w} is an input`);
  assert.ok(!inputs.some((n) => n.startsWith('m.') || n.startsWith('v.') || n === 'lr'), 'AdamW is not in the graph (host pass)');
  const ops = new Set(g.nodes.map((n) => n.opType));
  for (const op of ['SimplifiedLayerNormalization', 'RotaryEmbedding', 'QuickGelu']) assert.ok(ops.has(op), `${op} in the LoRA train graph`);
});

test('a LoRA trainer keeps AdamW state (and its grads graph gradients) for the adapter only', async () => {
  const dir = join(import.meta.dirname, '..', 'fixtures', 'llama', 'qwen2-bias-tied');
  const config = readHfConfig(join(dir, 'config.json'));
  const lora: LoraConfig = { r: 2, alpha: 4, targets: ['q', 'v'] };
  const adapterNames = [...loraParameterShapes(config, lora).keys()].sort();
  const trainer = new TrainerCore(config, readSafetensorsDir(dir).weights, { loss: 'dpo', beta: 0.1, lr: 1e-3, warmupSteps: 0, lora: { config: lora } });
  const state = trainer.state();
  assert.deepEqual([...state.m.keys()].sort(), adapterNames);
  assert.deepEqual([...state.v.keys()].sort(), adapterNames);
  const g = buildGradsGraph({ config, dtype: 'float32', loss: 'dpo', beta: 0.1, lora });
  assert.deepEqual(g.outputs.map((o) => o.name).filter((n) => n.startsWith('grad.')).sort(), adapterNames.map(gradName).sort());
  await trainer.release();
});
