/**
 * The arena's model: a small Llama-shaped decoder with a byte-level tokenizer whose only merges are
 * the arena's fixed phrases (task templates, the answer marker, filler), added as whole tokens. Answer
 * words stay one character per token, so reversing, upper-casing and copying are learnable by a small
 * model in minutes, while filler costs one token per phrase (sequences stay short: ~8–30 prompt tokens,
 * ≤ 14 response tokens). Any UTF-8 text still encodes (every byte has a token).
 */
import type { LlamaConfig } from '../model/llama-config.ts';
import { Tokenizer, type TokenizerFiles } from '../model/tokenizer.ts';
import { ANSWER_MARKER, CLOSERS, OPENERS } from './text.ts';

const SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>'] as const;

/** Phrases that become single tokens (longest first is not needed: HF matches added tokens leftmost-longest). */
export const ARENA_PHRASES: readonly string[] = [
  ANSWER_MARKER,
  ...OPENERS,
  ...CLOSERS,
  'reverse the word',
  'uppercase the word',
  'count the letter',
  'add',
  'and',
  'what is',
];

/** GPT-2's byte → printable-unicode map (the ByteLevel pre-tokenizer's alphabet). */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const out: string[] = new Array(256);
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])));
  return out;
}

/** tokenizer.json + tokenizer_config.json of the arena tokenizer (ids: specials 0–1, bytes 2–257, phrases after). */
export function arenaTokenizerFiles(): TokenizerFiles {
  const vocab: Record<string, number> = {};
  SPECIALS.forEach((s, i) => (vocab[s] = i));
  bytesToUnicode().forEach((ch, b) => (vocab[ch] = SPECIALS.length + b));
  const byteCount = SPECIALS.length + 256;
  const added = [
    ...SPECIALS.map((content, id) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    ...ARENA_PHRASES.map((content, i) => ({ id: byteCount + i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: false })),
  ];
  for (const a of added) vocab[a.content] = a.id;
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: SPECIALS[0], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [{ SpecialToken: { id: SPECIALS[0], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { [SPECIALS[0]]: { id: SPECIALS[0], ids: [0], tokens: [SPECIALS[0]] } },
    },
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [],
    },
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: SPECIALS[0],
    eos_token: SPECIALS[1],
    pad_token: SPECIALS[1],
    unk_token: null,
    clean_up_tokenization_spaces: false,
    model_max_length: 256,
  };
  return { tokenizerJson: JSON.stringify(tokenizerJson), tokenizerConfig: JSON.stringify(tokenizerConfig, null, 2), chatTemplateJinja: null };
}

export interface ArenaShape {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
}

/** The Llama config of an arena model (tied embeddings, vocab padded to a multiple of 8). */
export function arenaModelConfig(shape: ArenaShape): { config: LlamaConfig; tokenizer: Tokenizer } {
  const tokenizer = new Tokenizer(arenaTokenizerFiles(), 'arena tokenizer.json');
  if (shape.hiddenSize % shape.numHeads !== 0) throw new Error(`arena model: hiddenSize ${shape.hiddenSize} is not a multiple of numHeads ${shape.numHeads}`);
  const config: LlamaConfig = {
    architecture: 'llama',
    vocabSize: Math.ceil(tokenizer.vocabSize / 8) * 8,
    hiddenSize: shape.hiddenSize,
    intermediateSize: shape.intermediateSize,
    numLayers: shape.numLayers,
    numHeads: shape.numHeads,
    numKvHeads: shape.numKvHeads,
    headDim: shape.hiddenSize / shape.numHeads,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: true,
    attentionBias: false,
    bosTokenId: 0,
    eosTokenIds: [1],
    padTokenId: 1,
  };
  return { config, tokenizer };
}
