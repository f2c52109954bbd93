/**
 * tokenizer.json + tokenizer_config.json + chat template from a GGUF's `tokenizer.*` keys, built as
 * transformers' GGUF loader builds them (integrations/gguf/gguf_tokenizer_mapping.py): a byte-level BPE
 * (`tokenizer.ggml.model` = "gpt2") with the file's vocabulary and merges, tokens of type CONTROL (3)
 * as special added tokens and USER_DEFINED (4) as plain added tokens, the pre-tokenizer split named by
 * `tokenizer.ggml.pre` (GPT-2's byte-level regex for names it does not know), and BOS prepended when
 * `tokenizer.ggml.add_bos_token` is set. SentencePiece vocabularies ("llama") are refused.
 */
import type { TokenizerFiles } from '../tokenizer.ts';
import type { MetadataReader } from './reader.ts';

export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

export const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** `tokenizer.ggml.pre` names whose split regex we know (as transformers maps them). */
export const PRE_TOKENIZER_SPLITS: Readonly<Record<string, string>> = {
  llama3: LLAMA3_SPLIT, 'llama-v3': LLAMA3_SPLIT, 'llama-bpe': LLAMA3_SPLIT, falcon3: LLAMA3_SPLIT, 'falcon-h1': LLAMA3_SPLIT,
  pixtral: LLAMA3_SPLIT, 'midm-2.0': LLAMA3_SPLIT, lfm2: LLAMA3_SPLIT, dbrx: LLAMA3_SPLIT, 'smaug-bpe': LLAMA3_SPLIT,
  qwen2: QWEN2_SPLIT, 'deepseek-r1-qwen': QWEN2_SPLIT, megrez: QWEN2_SPLIT,
};

/** GPT-2's map from bytes to printable characters (the byte-level BPE alphabet). */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const out: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = keep.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + extra++);
  return out;
}

const BYTE_CHARS = bytesToUnicode();
const ALPHABET = new Set(BYTE_CHARS);

function inAlphabet(token: string): boolean {
  for (const ch of token) if (!ALPHABET.has(ch)) return false;
  return true;
}

function respell(token: string): string {
  if (inAlphabet(token)) return token;
  let out = '';
  for (const b of Buffer.from(token, 'utf8')) out += BYTE_CHARS[b];
  return out;
}

export interface GgufTokenizer {
  files: TokenizerFiles;
  tokens: string[];
  bosTokenId: number | null;
  eosTokenId: number | null;
  padTokenId: number | null;
}

export function tokenizerFromGguf(m: MetadataReader): GgufTokenizer {
  const model = m.string('tokenizer.ggml.model');
  if (model !== 'gpt2') {
    m.fail('tokenizer.ggml.model', `is "${model}": only byte-level BPE vocabularies ("gpt2") are supported, not SentencePiece ("llama") or others`);
  }
  const tokens = m.strings('tokenizer.ggml.tokens')!;
  const merges = m.strings('tokenizer.ggml.merges')!;
  const types = m.ints('tokenizer.ggml.token_type');
  if (types && types.length !== tokens.length) m.fail('tokenizer.ggml.token_type', `has ${types.length} entries for ${tokens.length} tokens`);
  const idOf = (key: string): number | null => {
    const id = m.int(key, null);
    if (id !== null && id >= tokens.length) m.fail(key, `is ${id}, beyond the ${tokens.length} tokens`);
    return id;
  };
  const bos = idOf('tokenizer.ggml.bos_token_id');
  const eos = idOf('tokenizer.ggml.eos_token_id');
  const unk = idOf('tokenizer.ggml.unknown_token_id');
  const pad = idOf('tokenizer.ggml.padding_token_id');
  const addBos = m.bool('tokenizer.ggml.add_bos_token', false) && bos !== null;
  const addEos = m.bool('tokenizer.ggml.add_eos_token', false) && eos !== null;

  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => (vocab[respell(t)] = id));
  const added: Array<Record<string, unknown>> = [];
  const addedToken = (id: number, special: boolean) => ({ id, content: tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  types?.forEach((type, id) => {
    if (type === TOKEN_TYPE.CONTROL && inAlphabet(tokens[id])) added.push(addedToken(id, true));
  });
  types?.forEach((type, id) => {
    if (type === TOKEN_TYPE.USER_DEFINED && tokens[id] in vocab) added.push(addedToken(id, false));
  });

  const pre = m.string('tokenizer.ggml.pre', null);
  const split = pre === null ? undefined : PRE_TOKENIZER_SPLITS[pre];
  const preTokenizer = split
    ? {
        type: 'Sequence',
        pretokenizers: [
          { type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false },
          { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
        ],
      }
    : { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };

  const seq = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const special = (id: number, typeId: number) => ({ SpecialToken: { id: tokens[id], type_id: typeId } });
  const single = [...(addBos ? [special(bos!, 0)] : []), seq('A', 0), ...(addEos ? [special(eos!, 0)] : [])];
  const pair = [...single, ...(addBos ? [special(bos!, 1)] : []), seq('B', 1), ...(addEos ? [special(eos!, 1)] : [])];
  const specialTokens: Record<string, unknown> = {};
  for (const id of [addBos ? bos : null, addEos ? eos : null]) {
    if (id !== null) specialTokens[tokens[id]] = { id: tokens[id], ids: [id], tokens: [tokens[id]] };
  }

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added.sort((a, b) => (a.id as number) - (b.id as number)),
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: { type: 'TemplateProcessing', single, pair, special_tokens: specialTokens },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
      byte_fallback: false, ignore_merges: false, vocab, merges: merges.map((mg) => mg.split(' ')),
    },
  };
  const name = (id: number | null) => (id === null ? null : tokens[id]);
  const tokenizerConfig = {
    add_bos_token: addBos,
    add_eos_token: addEos,
    bos_token: name(bos),
    eos_token: name(eos),
    pad_token: name(pad),
    unk_token: name(unk),
    tokenizer_class: 'GPT2Tokenizer',
    ...(pre !== null ? { gguf_pre_tokenizer: pre } : {}),
  };
  return {
    files: {
      tokenizerJson: JSON.stringify(tokenizerJson),
      tokenizerConfig: `${JSON.stringify(tokenizerConfig, null, 2)}\n`,
      chatTemplateJinja: m.string('tokenizer.chat_template', null),
    },
    tokens,
    bosTokenId: bos,
    eosTokenId: eos,
    padTokenId: pad,
  };
}
