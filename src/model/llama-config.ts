/**
 * The shape of a Llama-family decoder, normalised from a Hugging Face config.json.
 * Covers LlamaForCausalLM (incl. Llama-3 rope scaling, SmolLM2) and Qwen2ForCausalLM (q/k/v bias).
 * Parsing/validation from and to config.json lives in hf-config.ts.
 */
export type Architecture = 'llama' | 'qwen2';

export interface Llama3RopeScaling {
  ropeType: 'llama3';
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface LlamaConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  maxPositionEmbeddings: number;
  /** lm_head shares the embedding matrix (no lm_head.weight tensor). */
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  attentionBias: boolean;
  bosTokenId: number | null;
  /** One or more end-of-sequence ids; generation stops on any of them. */
  eosTokenIds: number[];
  padTokenId: number | null;
}
