import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hfConfigJson, parseHfConfig, readHfConfig, writeHfConfig } from '../../src/model/hf-config.ts';
import type { LlamaConfig } from '../../src/model/llama-config.ts';

interface Resolved {
  model_type: 'llama' | 'qwen2';
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_parameters: Record<string, unknown>;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
  bos_token_id: number | null;
  eos_token_id: number | number[] | null;
  pad_token_id: number | null;
}
const fixture = JSON.parse(readFileSync(new URL('../fixtures/hf-config/cases.json', import.meta.url), 'utf8')) as {
  cases: Record<string, { config: Record<string, unknown>; transformers: Resolved }>;
};

/** What transformers resolved, in LlamaConfig form. */
function fromTransformers(t: Resolved): LlamaConfig {
  const rope = t.rope_parameters;
  return {
    architecture: t.model_type,
    vocabSize: t.vocab_size,
    hiddenSize: t.hidden_size,
    intermediateSize: t.intermediate_size,
    numLayers: t.num_hidden_layers,
    numHeads: t.num_attention_heads,
    numKvHeads: t.num_key_value_heads,
    headDim: t.head_dim,
    rmsNormEps: t.rms_norm_eps,
    ropeTheta: rope.rope_theta as number,
    ropeScaling:
      rope.rope_type === 'llama3'
        ? {
            ropeType: 'llama3',
            factor: rope.factor as number,
            lowFreqFactor: rope.low_freq_factor as number,
            highFreqFactor: rope.high_freq_factor as number,
            originalMaxPositionEmbeddings: rope.original_max_position_embeddings as number,
          }
        : null,
    maxPositionEmbeddings: t.max_position_embeddings,
    tieWordEmbeddings: t.tie_word_embeddings,
    attentionBias: t.attention_bias,
    bosTokenId: t.bos_token_id,
    eosTokenIds: t.eos_token_id === null ? [] : Array.isArray(t.eos_token_id) ? t.eos_token_id : [t.eos_token_id],
    padTokenId: t.pad_token_id,
  };
}

test('parseHfConfig resolves configs (real and minimal) exactly as transformers does', () => {
  const names = Object.keys(fixture.cases);
  assert.ok(names.length >= 7);
  for (const [name, { config, transformers }] of Object.entries(fixture.cases)) {
    if (name === 'qwen2-minimal') continue; // transformers resolves 32 kv heads for 6 heads: rejected below
    assert.deepEqual(parseHfConfig(config, `${name}/config.json`), fromTransformers(transformers), name);
  }
});

test('Qwen2 without num_key_value_heads gets transformers default 32, which must divide the heads', () => {
  const { config, transformers } = fixture.cases['qwen2-minimal'];
  assert.equal(transformers.num_key_value_heads, 32);
  assert.throws(() => parseHfConfig(config, 'q/config.json'), /q\/config\.json: "num_key_value_heads" \(32, transformers' default when the key is absent,\) must divide num_attention_heads \(6\)/);
  assert.equal(parseHfConfig({ ...config, num_key_value_heads: null }).numKvHeads, 6, 'explicit null means one kv head per head');
});

test('hfConfigJson writes back what parseHfConfig reads, for every fixture', () => {
  for (const [name, { config }] of Object.entries(fixture.cases)) {
    if (name === 'qwen2-minimal') continue;
    const parsed = parseHfConfig(config);
    const json = hfConfigJson(parsed, { dtype: 'bfloat16' });
    assert.deepEqual(parseHfConfig(json), parsed, name);
    assert.deepEqual(Object.keys(json), Object.keys(json).sort(), 'sorted keys as save_pretrained writes them');
    assert.equal(json.dtype, 'bfloat16');
  }
});

test('writeHfConfig and readHfConfig go through a file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hfcfg-'));
  try {
    const cfg = parseHfConfig(fixture.cases['llama3.2-1b'].config);
    writeHfConfig(join(dir, 'config.json'), cfg);
    assert.deepEqual(readHfConfig(join(dir, 'config.json')), cfg);
    assert.ok(readFileSync(join(dir, 'config.json'), 'utf8').endsWith('}\n'));
    writeFileSync(join(dir, 'bad.json'), '{"model_type": "llama",');
    assert.throws(() => readHfConfig(join(dir, 'bad.json')), new RegExp(`${dir}/bad\\.json: not valid JSON`));
    assert.throws(() => readHfConfig(join(dir, 'none.json')), /none\.json: cannot read model config/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('missing and invalid keys, unsupported features and unknown architectures name the file and key', () => {
  const base = fixture.cases['smollm2-135m'].config;
  const without = (key: string) => Object.fromEntries(Object.entries(base).filter(([k]) => k !== key));
  const cases: Array<[unknown, RegExp]> = [
    [without('hidden_size'), /m\/config\.json: "hidden_size" is missing \(required\)/],
    [without('vocab_size'), /"vocab_size" is missing/],
    [without('num_hidden_layers'), /"num_hidden_layers" is missing/],
    [{ ...base, hidden_size: '576' }, /"hidden_size" must be an integer ≥ 1, got "576"/],
    [{ ...base, num_key_value_heads: 4 }, /"num_key_value_heads" \(4\) must divide num_attention_heads \(9\)/],
    [{ ...base, rms_norm_eps: -1 }, /"rms_norm_eps" must be a positive number/],
    [{ ...base, tie_word_embeddings: 'yes' }, /"tie_word_embeddings" must be true or false/],
    [{ ...base, eos_token_id: [1, 'x'] }, /"eos_token_id\[1\]" must be a token id/],
    [{ ...base, architectures: ['MistralForCausalLM'], model_type: undefined }, /"architectures" names an unsupported architecture "MistralForCausalLM"; supported: LlamaForCausalLM, Qwen2ForCausalLM/],
    [{ ...base, model_type: 'gpt2', architectures: undefined }, /"model_type" is an unsupported model type "gpt2"/],
    [{ ...base, model_type: 'qwen2' }, /"model_type" is "qwen2" but architectures names LlamaForCausalLM/],
    [without('model_type') && { ...without('model_type'), architectures: undefined }, /"model_type" is missing \(and so is "architectures"\)/],
    [{ ...base, rope_scaling: { rope_type: 'yarn', factor: 4 } }, /"rope_scaling\.rope_type" is "yarn"; only "default" and "llama3"/],
    [{ ...base, rope_scaling: { rope_type: 'llama3', factor: 8, high_freq_factor: 4 } }, /"rope_scaling\.low_freq_factor" is missing \(required\)/],
    [{ ...base, attention_bias: true }, /"attention_bias" is true: Llama attention biases \(incl\. o_proj\) are not supported/],
    [{ ...base, hidden_act: 'gelu' }, /"hidden_act" is "gelu"; only "silu"/],
    [{ ...fixture.cases['qwen2.5-0.5b'].config, use_sliding_window: true }, /"use_sliding_window" is true/],
    [[1, 2], /m\/config\.json: not a JSON object/],
  ];
  for (const [json, pattern] of cases) assert.throws(() => parseHfConfig(json, 'm/config.json'), pattern);
});
