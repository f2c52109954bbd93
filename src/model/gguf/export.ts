/**
 * `dice model export DIR --gguf OUT`: a model directory → a GGUF that llama.cpp (and so Ollama and
 * LM Studio) loads: llama.cpp names, Llama q/k rows permuted as llama.cpp's converter does, weights as
 * f32, f16, q8_0 or q4_0 (vectors — norms, biases — stay f32, as llama.cpp keeps them), the byte-level
 * BPE tokenizer under `tokenizer.ggml.*`, the chat template, and the checkpoint's lineage under `dice.*`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { MANIFEST_FILE, sha256File, verifyCheckpoint, weightsFileOf } from '../checkpoint.ts';
import type { LlamaConfig } from '../llama-config.ts';
import { loadPolicy } from '../policy.ts';
import { fromFloat32, SINGLE_FILE_NAME, toFloat32 } from '../safetensors.ts';
import { numel } from '../tensor.ts';
import { EXPORT_TYPES, type ExportType, GGML_TYPE_BY_NAME, tensorByteSize } from './format.ts';
import { ggufTensorName, permuteRopeRows } from './names.ts';
import { quantizeQ4_0, quantizeQ8_0 } from './quantize.ts';
import { LLAMA3_SPLIT, PRE_TOKENIZER_SPLITS, QWEN2_SPLIT, TOKEN_TYPE } from './tokenizer.ts';
import { bool, f32, GgufWriter, i32s, str, strings, type TensorEntry, type TypedValue, u32 } from './writer.ts';

export { EXPORT_TYPES, type ExportType };

/** llama.cpp's `general.file_type` (enum llama_ftype) for each export type. */
const FILE_TYPE: Record<ExportType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 };
const MATRIX_TYPE: Record<ExportType, string> = { f32: 'F32', f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0' };

type Json = Record<string, unknown>;

function findTemplateProcessing(p: Json | null | undefined): Json | null {
  if (!p) return null;
  if (p.type === 'TemplateProcessing') return p;
  if (p.type === 'Sequence') for (const q of (p.processors ?? []) as Json[]) { const t = findTemplateProcessing(q); if (t) return t; }
  return null;
}

/** The `tokenizer.ggml.pre` name llama.cpp knows for this tokenizer.json's pre-tokenizer. */
function preTokenizerName(pre: Json | null, tokenizerConfig: Json, source: string): string {
  if (typeof tokenizerConfig.gguf_pre_tokenizer === 'string') return tokenizerConfig.gguf_pre_tokenizer;
  if (pre?.type === 'ByteLevel' && pre.use_regex !== false) return 'gpt2';
  const split = ((pre?.pretokenizers ?? []) as Json[]).find((p) => p.type === 'Split');
  const regex = (split?.pattern as Json | undefined)?.Regex;
  if (regex === LLAMA3_SPLIT) return 'llama-bpe';
  if (regex === QWEN2_SPLIT) return 'qwen2';
  const known = Object.keys(PRE_TOKENIZER_SPLITS).join(', ');
  throw new Error(`${source}: pre_tokenizer ${JSON.stringify(pre).slice(0, 200)} matches no pre-tokenizer llama.cpp names (known: gpt2, ${known})`);
}

/** `tokenizer.*` metadata from a model directory's tokenizer files. */
function tokenizerMetadata(dir: string, config: LlamaConfig, tokenizerConfig: Json, chatTemplate: string | null): Map<string, TypedValue> {
  const source = join(dir, 'tokenizer.json');
  const tj = JSON.parse(readFileSync(source, 'utf8')) as Json;
  const model = tj.model as Json;
  const hasByteLevel = JSON.stringify(tj.pre_tokenizer ?? null).includes('"ByteLevel"');
  if (model?.type !== 'BPE' || !hasByteLevel) throw new Error(`${source}: only byte-level BPE tokenizers can be exported to GGUF (model ${String(model?.type)})`);
  const tokens: Array<string | undefined> = new Array(config.vocabSize);
  const types = new Array<number>(config.vocabSize).fill(TOKEN_TYPE.NORMAL);
  for (const [tok, id] of Object.entries(model.vocab as Record<string, number>)) if (id < config.vocabSize) tokens[id] = tok;
  for (const t of (tj.added_tokens ?? []) as Array<{ id: number; content: string; special: boolean }>) {
    if (t.id >= config.vocabSize) throw new Error(`${source}: added token ${JSON.stringify(t.content)} has id ${t.id} ≥ vocab_size ${config.vocabSize}`);
    tokens[t.id] = t.content;
    types[t.id] = t.special ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
  }
  for (let id = 0; id < tokens.length; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`; // llama.cpp's converter pads a vocabulary smaller than the embedding so
      types[id] = TOKEN_TYPE.UNUSED;
    }
  }
  const merges = (model.merges as Array<string | [string, string]>).map((m) => (typeof m === 'string' ? m : m.join(' ')));
  const bosFirst = (findTemplateProcessing(tj.post_processor as Json)?.single as Json[] | undefined)?.[0]?.SpecialToken as Json | undefined;
  const md = new Map<string, TypedValue>([
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str(preTokenizerName(tj.pre_tokenizer as Json, tokenizerConfig, source))],
    ['tokenizer.ggml.tokens', strings(tokens as string[])],
    ['tokenizer.ggml.token_type', i32s(types)],
    ['tokenizer.ggml.merges', strings(merges)],
  ]);
  const idOfToken = (v: unknown): number | null => {
    const content = typeof v === 'string' ? v : (v as Json | null)?.content;
    if (typeof content !== 'string') return null;
    const id = tokens.indexOf(content);
    return id < 0 ? null : id;
  };
  const bos = config.bosTokenId ?? idOfToken(tokenizerConfig.bos_token);
  const eos = config.eosTokenIds[0] ?? idOfToken(tokenizerConfig.eos_token);
  const unk = idOfToken(tokenizerConfig.unk_token);
  const pad = config.padTokenId ?? idOfToken(tokenizerConfig.pad_token);
  if (bos !== null) md.set('tokenizer.ggml.bos_token_id', u32(bos));
  if (eos !== null) md.set('tokenizer.ggml.eos_token_id', u32(eos));
  if (unk !== null) md.set('tokenizer.ggml.unknown_token_id', u32(unk));
  if (pad !== null) md.set('tokenizer.ggml.padding_token_id', u32(pad));
  md.set('tokenizer.ggml.add_bos_token', bool(bosFirst !== undefined));
  md.set('tokenizer.ggml.add_eos_token', bool(false));
  if (chatTemplate) md.set('tokenizer.chat_template', str(chatTemplate));
  return md;
}

/** `dice.*`: the checkpoint's lineage (manifest.json when the directory has one) and the weights' sha256. */
function lineageMetadata(dir: string): Map<string, TypedValue> {
  const md = new Map<string, TypedValue>();
  if (existsSync(join(dir, MANIFEST_FILE))) {
    const m = verifyCheckpoint(dir);
    md.set('dice.checkpoint.version', str(m.version));
    if (m.parentVersion !== null) md.set('dice.checkpoint.parent_version', str(m.parentVersion));
    if (m.referenceVersion !== null) md.set('dice.checkpoint.reference_version', str(m.referenceVersion));
    md.set('dice.checkpoint.created_at', str(m.createdAt));
    md.set('dice.checkpoint.sha256', str(m.sha256));
  } else {
    md.set('dice.checkpoint.sha256', str(sha256File(join(dir, weightsFileOf(dir)))));
  }
  return md;
}

export interface ExportResult {
  config: LlamaConfig;
  tensors: number;
  bytes: number;
  metadata: Map<string, TypedValue>;
}

export function exportGguf(dir: string, out: string, type: ExportType = 'f32'): ExportResult {
  if (!EXPORT_TYPES.includes(type)) throw new Error(`--type ${type}: must be one of ${EXPORT_TYPES.join(', ')}`);
  const m = loadPolicy(dir); // a LoRA checkpoint exports as its merged policy
  const c = m.config;
  if (c.ropeScaling) throw new Error(`${join(dir, 'config.json')}: rope_scaling (llama3) cannot be exported to GGUF yet`);
  const arch = c.architecture;
  const md = new Map<string, TypedValue>([
    ['general.architecture', str(arch)],
    ['general.type', str('model')],
    ['general.name', str(basename(dir.replace(/\/+$/, '')))],
    ['general.file_type', u32(FILE_TYPE[type])],
    ['general.quantization_version', u32(2)],
    [`${arch}.context_length`, u32(c.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, u32(c.hiddenSize)],
    [`${arch}.feed_forward_length`, u32(c.intermediateSize)],
    [`${arch}.block_count`, u32(c.numLayers)],
    [`${arch}.attention.head_count`, u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, u32(c.numKvHeads)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(c.rmsNormEps)],
    [`${arch}.rope.freq_base`, f32(c.ropeTheta)],
  ]);
  if (arch === 'llama') {
    md.set('llama.rope.dimension_count', u32(c.headDim));
    md.set('llama.vocab_size', u32(c.vocabSize));
  }
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    md.set(`${arch}.attention.key_length`, u32(c.headDim));
    md.set(`${arch}.attention.value_length`, u32(c.headDim));
  }
  for (const [k, v] of tokenizerMetadata(dir, c, m.tokenizer.config, m.chatTemplate?.source ?? null)) md.set(k, v);
  for (const [k, v] of lineageMetadata(dir)) md.set(k, v);

  const entries: Array<TensorEntry & { hf: string }> = [];
  for (const [hf, t] of [...m.weights].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (hf === 'lm_head.weight' && c.tieWordEmbeddings) continue;
    const matrix = t.shape.length === 2;
    let typeName = matrix ? MATRIX_TYPE[type] : 'F32';
    if ((typeName === 'Q8_0' || typeName === 'Q4_0') && t.shape[1] % 32 !== 0) typeName = 'F16'; // rows must be whole blocks
    const ggmlType = GGML_TYPE_BY_NAME.get(typeName)!;
    const name = ggufTensorName(hf);
    entries.push({ hf, name, shape: t.shape, type: ggmlType, byteSize: tensorByteSize(ggmlType, [...t.shape].reverse(), name) });
  }
  const writer = new GgufWriter(out, md, entries);
  let bytes = 0;
  for (const e of entries) {
    const t = m.weights.get(e.hf)!;
    let values = toFloat32(t);
    if (arch === 'llama' && (e.hf.endsWith('q_proj.weight') || e.hf.endsWith('k_proj.weight'))) {
      const heads = e.hf.endsWith('q_proj.weight') ? c.numHeads : c.numKvHeads;
      values = permuteRopeRows(values, t.shape[0], t.shape[1], heads, false);
    }
    writer.write(e.name, encode(values, e.type, numel(t.shape)));
    bytes += e.byteSize;
  }
  writer.close();
  return { config: c, tensors: entries.length, bytes, metadata: md };
}

function encode(values: Float32Array, ggmlType: number, n: number): Uint8Array {
  switch (ggmlType) {
    case 0: return new Uint8Array(values.buffer, values.byteOffset, n * 4);
    case 1: return new Uint8Array(fromFloat32(values, [n], 'float16').data.buffer);
    case 8: return quantizeQ8_0(values);
    case 2: return quantizeQ4_0(values);
    default: throw new Error(`export: no encoder for ggml type ${ggmlType}`);
  }
}
