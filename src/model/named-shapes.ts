/**
 * Named model shapes for `dice model init`: `tiny` and `tiny-qwen2` for tests, and the exact shapes of
 * SmolLM2-135M and Qwen2.5-0.5B (from their published config.json) for benchmarks. Each comes with one
 * of the project's tokenizers (assets/tokenizers/); the big shapes' vocab exceeds the tokenizer's, which
 * Hugging Face allows (the extra ids are never produced by the tokenizer).
 */
import type { LlamaConfig } from './llama-config.ts';
import { Tokenizer, builtinTokenizerDir, type BuiltinTokenizer } from './tokenizer.ts';

type Shape = Omit<LlamaConfig, 'bosTokenId' | 'eosTokenIds' | 'padTokenId' | 'vocabSize'> & {
  /** null: exactly the tokenizer's vocab */
  vocabSize: number | null;
};

interface NamedShapeSpec {
  description: string;
  tokenizer: BuiltinTokenizer;
  shape: Shape;
}

const SPECS = {
  tiny: {
    description: 'Llama, tied embeddings, 2 layers, hidden 64, GQA 4/2 heads (tests)',
    tokenizer: 'llama3',
    shape: {
      architecture: 'llama', vocabSize: null, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2,
      headDim: 16, rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, maxPositionEmbeddings: 2048,
      tieWordEmbeddings: true, attentionBias: false,
    },
  },
  'tiny-qwen2': {
    description: 'Qwen2, q/k/v bias, untied lm_head, 2 layers, hidden 64, GQA 4/2 heads (tests)',
    tokenizer: 'qwen2',
    shape: {
      architecture: 'qwen2', vocabSize: null, hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2,
      headDim: 16, rmsNormEps: 1e-6, ropeTheta: 1000000, ropeScaling: null, maxPositionEmbeddings: 2048,
      tieWordEmbeddings: false, attentionBias: true,
    },
  },
  'smollm2-135m': {
    description: 'the shape of HuggingFaceTB/SmolLM2-135M (Llama, 30 layers, hidden 576, 9/3 heads, vocab 49152, tied)',
    tokenizer: 'llama3',
    shape: {
      architecture: 'llama', vocabSize: 49152, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3,
      headDim: 64, rmsNormEps: 1e-5, ropeTheta: 100000, ropeScaling: null, maxPositionEmbeddings: 8192,
      tieWordEmbeddings: true, attentionBias: false,
    },
  },
  'qwen2.5-0.5b': {
    description: 'the shape of Qwen/Qwen2.5-0.5B (Qwen2, 24 layers, hidden 896, 14/2 heads, vocab 151936, tied, bias)',
    tokenizer: 'qwen2',
    shape: {
      architecture: 'qwen2', vocabSize: 151936, hiddenSize: 896, intermediateSize: 4864, numLayers: 24, numHeads: 14, numKvHeads: 2,
      headDim: 64, rmsNormEps: 1e-6, ropeTheta: 1000000, ropeScaling: null, maxPositionEmbeddings: 32768,
      tieWordEmbeddings: true, attentionBias: true,
    },
  },
} satisfies Record<string, NamedShapeSpec>;

export type NamedShape = keyof typeof SPECS;
export const NAMED_SHAPES = Object.keys(SPECS) as NamedShape[];

export function describeNamedShape(name: NamedShape): string {
  return SPECS[name].description;
}

export interface NamedModelSpec {
  config: LlamaConfig;
  tokenizer: Tokenizer;
}

/** The config of a named shape with its tokenizer; special-token ids come from that tokenizer. */
export function namedShape(name: string): NamedModelSpec {
  if (!Object.hasOwn(SPECS, name)) {
    throw new Error(`unknown model shape "${name}"; known: ${NAMED_SHAPES.join(', ')}`);
  }
  const spec: NamedShapeSpec = SPECS[name as NamedShape];
  const tokenizer = Tokenizer.fromDir(builtinTokenizerDir(spec.tokenizer));
  const id = (token: string): number => {
    const v = tokenizer.tokenToId(token);
    if (v === undefined) throw new Error(`tokenizer ${spec.tokenizer} lacks ${token}`);
    return v;
  };
  // As the real models: Llama-3 stops on end-of-text or end-of-turn; Qwen2.5 on <|im_end|> or <|endoftext|>.
  const ids =
    spec.tokenizer === 'llama3'
      ? { bosTokenId: id('<|begin_of_text|>'), eosTokenIds: [id('<|end_of_text|>'), id('<|eot_id|>')], padTokenId: null }
      : { bosTokenId: id('<|endoftext|>'), eosTokenIds: [id('<|im_end|>'), id('<|endoftext|>')], padTokenId: id('<|endoftext|>') };
  const config: LlamaConfig = { ...spec.shape, ...ids, vocabSize: spec.shape.vocabSize ?? tokenizer.vocabSize };
  return { config, tokenizer };
}
