/**
 * The model's tokenizer: tokenizer.json (+ tokenizer_config.json) through @huggingface/tokenizers.
 *
 * Checked against Python `tokenizers` on hard strings for byte-level BPE tokenizers with the Llama-3 and
 * Qwen2 pre-tokenizer regexes (test/model/tokenizer.test.ts). Decoding skips ids the tokenizer does not
 * know, as the Rust tokenizers do: a model's vocab may be larger than its tokenizer's (HF allows that).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';

export interface EncodeOptions {
  /** Add the tokenizer's post-processor specials (e.g. Llama-3's BOS). Default true, as HF. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (BOS/EOS/chat markers) from the text. Default false, as HF. */
  skipSpecialTokens?: boolean;
}

/** The files that make a tokenizer, as their text, so saveModel writes them back byte for byte. */
export interface TokenizerFiles {
  /** tokenizer.json */
  tokenizerJson: string;
  /** tokenizer_config.json (null when the model has none) */
  tokenizerConfig: string | null;
  /** chat_template.jinja, where transformers 5 keeps the chat template (null when absent) */
  chatTemplateJinja?: string | null;
}

export class Tokenizer {
  readonly files: TokenizerFiles;
  /** tokenizer_config.json as an object ({} when absent). */
  readonly config: Record<string, unknown>;
  private readonly hf: HfTokenizer;
  private readonly specials: Map<string, number>;
  /** Number of ids the tokenizer knows (model vocab + added tokens). */
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly padTokenId: number | null;

  constructor(files: TokenizerFiles, source = 'tokenizer.json') {
    this.files = files;
    const tokenizerJson = parseJsonObject(files.tokenizerJson, source);
    this.config = files.tokenizerConfig === null ? {} : parseJsonObject(files.tokenizerConfig, source.replace(/tokenizer\.json$/, 'tokenizer_config.json'));
    try {
      this.hf = new HfTokenizer(tokenizerJson, this.config);
    } catch (err) {
      throw new Error(`${source}: cannot build the tokenizer (${(err as Error).message})`);
    }
    this.specials = new Map();
    const added = (tokenizerJson.added_tokens ?? []) as Array<{ id: number; content: string; special: boolean }>;
    for (const t of added) if (t.special) this.specials.set(t.content, t.id);
    this.vocabSize = Math.max(-1, ...this.hf.get_vocab(true).values()) + 1;
    const cfg = this.config;
    this.bosTokenId = this.specialId(cfg.bos_token, 'bos_token', source);
    this.eosTokenId = this.specialId(cfg.eos_token, 'eos_token', source);
    this.padTokenId = this.specialId(cfg.pad_token, 'pad_token', source);
  }

  /** Loads tokenizer.json and (if present) tokenizer_config.json and chat_template.jinja from a model directory. */
  static fromDir(dir: string): Tokenizer {
    const jsonPath = join(dir, 'tokenizer.json');
    return new Tokenizer(readTokenizerFiles(dir), jsonPath);
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.hf.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const known: number[] = [];
    for (let i = 0; i < ids.length; i++) if (ids[i] >= 0 && ids[i] < this.vocabSize) known.push(ids[i]);
    if (known.length === 0) return '';
    // clean_up_tokenization_spaces is a transformers-level option; byte-level tokenizers need it off.
    return this.hf.decode(known, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  /** Normalizer + pre-tokenizer pieces (byte-level symbols), to check the regex split against Python. */
  preTokenize(text: string): string[] {
    const normalized = this.hf.normalizer ? this.hf.normalizer.normalize(text) : text;
    return this.hf.pre_tokenizer ? this.hf.pre_tokenizer.pre_tokenize(normalized) : [normalized];
  }

  /** Id of a token string (special or not), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  /** Special tokens (added tokens marked special) by content. */
  get specialTokens(): ReadonlyMap<string, number> {
    return this.specials;
  }

  private specialId(value: unknown, key: string, source: string): number | null {
    // tokenizer_config.json holds either "<tok>" or an AddedToken object {content: "<tok>", ...}.
    const content = typeof value === 'string' ? value : (value as { content?: unknown } | null)?.content;
    if (content === undefined || content === null) return null;
    const id = typeof content === 'string' ? this.hf.token_to_id(content) : undefined;
    if (id === undefined) throw new Error(`${source}: tokenizer_config.json ${key} ${JSON.stringify(content)} is not in the vocabulary`);
    return id;
  }
}

/** The tokenizer files of a model directory, as text. */
export function readTokenizerFiles(dir: string): TokenizerFiles {
  const read = (name: string, required: boolean): string | null => {
    const path = join(dir, name);
    if (!required && !existsSync(path)) return null;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`${path}: cannot read (${(err as Error).message})`);
    }
  };
  return {
    tokenizerJson: read('tokenizer.json', true)!,
    tokenizerConfig: read('tokenizer_config.json', false),
    chatTemplateJinja: read('chat_template.jinja', false),
  };
}

function parseJsonObject(text: string, path: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new Error(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${path}: not a JSON object`);
  return json as Record<string, unknown>;
}

/** The tokenizers shipped with the project (assets/tokenizers/<name>/). */
export const BUILTIN_TOKENIZERS = ['llama3', 'qwen2'] as const;
export type BuiltinTokenizer = (typeof BUILTIN_TOKENIZERS)[number];

export function builtinTokenizerDir(name: BuiltinTokenizer): string {
  return new URL(`../../assets/tokenizers/${name}/`, import.meta.url).pathname;
}
