import { GraphBuilder, MS_DOMAIN } from '../onnx/builder.ts';
import type { LlamaConfig } from './llama-config.ts';
import { ropeTables } from './rope.ts';
import { toFloat32 } from './safetensors.ts';
import type { HostTensor, Weights } from './tensor.ts';

/**
 * Llama-family decoder (LlamaForCausalLM, Qwen2ForCausalLM) emitted as ONNX nodes into a GraphBuilder.
 *
 * Two graphs:
 *  A. teacher-forced per-token log-probs (`emitLlamaForward`): input_ids [B,T] int64 and attention_mask
 *     [B,T] int64 → logProbs [B,T-1] (log p(ids[:,t+1] | ids[:,≤t])) and optionally logits [B,T,V].
 *     Uses only standard ops with simple vector-Jacobian products, so the trainer's autodiff can walk it.
 *  B. one decode step with a KV cache (`emitLlamaDecodeStep`) for sampling.
 *
 * Padding: either side works. Positions count attended tokens only (position = cumsum(mask) − 1, as
 * transformers' generate() does), keys are masked by attention_mask and by causality over the padded
 * index. Outputs at padded positions are meaningless; callers mask them. Rows that attend to nothing
 * (a padded query in a left-padded row) get a uniform softmax rather than NaN.
 *
 * Weights are referenced by Hugging Face tensor names through `weight(name, shape)`, which returns the
 * graph value holding the tensor in the HF layout (Linear weights [out, in]): initializers for
 * inference, graph inputs for training. It is called once per name.
 */

export type FloatDType = 'float32' | 'float64';

export interface LlamaEmitOptions {
  dtype: FloatDType;
  weight: (hfName: string, shape: number[]) => string;
  /** Rows of the RoPE tables (positions supported); default cfg.maxPositionEmbeddings. */
  maxPositions?: number;
  /**
   * How Linear layers are emitted: 'matmul' (default) = MatMul(x, Transpose(W)), simple for autodiff;
   * 'gemm' = Gemm(x2d, W, transB=1) on the weight as stored, which spares onnxruntime a transposed
   * copy of every weight (inference graphs).
   */
  linear?: 'matmul' | 'gemm';
  /**
   * float32 only: RMSNorm as onnxruntime's SimplifiedLayerNormalization, RoPE as RotaryEmbedding and
   * SiLU as QuickGelu (com.microsoft), each one kernel where the standard ops make ~7, ~7 and 2, all
   * differentiable by the autodiff. Off (default): standard ops only. The trainer turns it on (float32).
   */
  contribOps?: boolean;
  /**
   * A hook on every Linear: given the weight's HF name, the layer input x ([N,in] with 'gemm',
   * [B,S,in] with 'matmul') and its output y, returns the output to use (a LoRA adapter adds
   * its low-rank term here; see lora-graph.ts). Absent: y.
   */
  adapter?: LinearAdapter;
}

export type LinearAdapter = (weight: string, x: string, y: string) => string;

/** cos/sin tables, the int64 positions [B,S] and (standard-op RoPE) their rows gathered [B,1,S,hd/2]. */
export interface RopeValues {
  positions: string;
  cosTable: string;
  sinTable: string;
  cos?: string;
  sin?: string;
}

export interface TeacherForcedOptions extends LlamaEmitOptions {
  /** int64 [B,T] */
  inputIds: string;
  /** int64 [B,T], 1 = token, 0 = padding (not with `packed`) */
  attentionMask?: string;
  /** Also return logits [B,T,V] (otherwise the lm_head runs on the first T−1 positions only). */
  logits?: boolean;
  /**
   * Only these predicting positions: int64 [R] flat indices into the B×(T−1) positions that predict a
   * next token. The lm_head then runs on R rows and logProbs is [R] (training: response tokens only).
   */
  predictAt?: string;
  /**
   * Rows that pack several sequences sharing a prefix (engine/trainer-batch.ts packPreferencePairs), in
   * place of attentionMask and predictAt: int64 positionIds [B,T] and segmentIds [B,T] (0 padding, 1 the
   * shared prefix, ≥ 2 one sequence each: a token attends earlier prefix tokens and earlier tokens of its
   * own segment), and the predictions as int64 [R] flat indices into the B×T positions and [R] targets.
   * logProbs is [R].
   */
  packed?: { positionIds: string; segmentIds: string; predictFrom: string; targets: string };
}

export interface KvPair {
  key: string;
  value: string;
}

export interface DecodeStepOptions extends LlamaEmitOptions {
  /** int64 [B,S] new tokens */
  inputIds: string;
  /** int64 [B,S] their positions */
  positionIds: string;
  /** int64 [B,P+S] over past and new tokens */
  attentionMask: string;
  /** per layer, [B,kvH,P,hd] */
  past: KvPair[];
  /** 'logits' (default) or 'logProbs' for the last position. */
  last?: 'logits' | 'logProbs';
  /**
   * 'concat' (default): present K/V = past ++ new, returned whole. 'append': the past is attended
   * as given (a preallocated cache whose unused columns the mask hides) and only the new K/V are
   * returned, for the caller to write into its cache: no per-step copy of the whole cache.
   */
  cache?: KvCacheMode;
}

export type KvCacheMode = 'concat' | 'append';

/** The HF tensor names of a config with their shapes (what `weight()` will be asked for). */
export function llamaParameterShapes(cfg: LlamaConfig): Map<string, number[]> {
  const D = cfg.hiddenSize;
  const q = cfg.numHeads * cfg.headDim;
  const kv = cfg.numKvHeads * cfg.headDim;
  const shapes = new Map<string, number[]>([['model.embed_tokens.weight', [cfg.vocabSize, D]]]);
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}`;
    shapes.set(`${p}.input_layernorm.weight`, [D]);
    shapes.set(`${p}.self_attn.q_proj.weight`, [q, D]);
    shapes.set(`${p}.self_attn.k_proj.weight`, [kv, D]);
    shapes.set(`${p}.self_attn.v_proj.weight`, [kv, D]);
    if (cfg.attentionBias) {
      shapes.set(`${p}.self_attn.q_proj.bias`, [q]);
      shapes.set(`${p}.self_attn.k_proj.bias`, [kv]);
      shapes.set(`${p}.self_attn.v_proj.bias`, [kv]);
    }
    shapes.set(`${p}.self_attn.o_proj.weight`, [D, q]);
    shapes.set(`${p}.post_attention_layernorm.weight`, [D]);
    shapes.set(`${p}.mlp.gate_proj.weight`, [cfg.intermediateSize, D]);
    shapes.set(`${p}.mlp.up_proj.weight`, [cfg.intermediateSize, D]);
    shapes.set(`${p}.mlp.down_proj.weight`, [D, cfg.intermediateSize]);
  }
  shapes.set('model.norm.weight', [D]);
  if (!cfg.tieWordEmbeddings) shapes.set('lm_head.weight', [cfg.vocabSize, D]);
  return shapes;
}

const INT64_MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Shared emit state: the builder, config, dtype and memoised weight lookups. */
class Emitter {
  private readonly refs = new Map<string, string>();
  private readonly shapes: Map<string, number[]>;
  constructor(
    readonly g: GraphBuilder,
    readonly cfg: LlamaConfig,
    readonly opts: LlamaEmitOptions,
  ) {
    this.shapes = llamaParameterShapes(cfg);
  }

  w(name: string): string {
    let v = this.refs.get(name);
    if (v === undefined) {
      const shape = this.shapes.get(name);
      if (!shape) throw new Error(`llama graph: no parameter named ${name} for this config`);
      v = this.opts.weight(name, shape);
      this.refs.set(name, v);
    }
    return v;
  }

  scalar(x: number): string {
    return this.g.scalar(x, this.opts.dtype);
  }

  /** x [B,S,in] @ W^T (+ b); W in HF layout [out, in]. */
  linear(x: string, weight: string, bias?: string): string {
    if (this.opts.linear === 'gemm') {
      const g = this.g;
      const out = this.shapes.get(weight)![0];
      const flat = g.op1('Reshape', [x, g.int64([-1, this.shapes.get(weight)![1]])]);
      const base = g.op1('Gemm', bias ? [flat, this.w(weight), this.w(bias)] : [flat, this.w(weight)], { transB: 1 });
      const y = this.opts.adapter ? this.opts.adapter(weight, flat, base) : base;
      return g.op1('Reshape', [y, g.op1('Concat', [this.batchSeqShape(x), g.int64([out])], { axis: 0 })]);
    }
    const wt = this.g.op1('Transpose', [this.w(weight)], { perm: [1, 0] });
    const base = this.g.op1('MatMul', [x, wt]);
    const y = this.opts.adapter ? this.opts.adapter(weight, x, base) : base;
    return bias ? this.g.op1('Add', [y, this.w(bias)]) : y;
  }

  private readonly bsShapes = new Map<string, string>();
  /** [B, S] of x (int64 [2]), one Shape node per distinct input (q/k/v and gate/up share theirs). */
  private batchSeqShape(x: string): string {
    let shape = this.bsShapes.get(x);
    if (shape === undefined) {
      shape = this.g.op1('Shape', [x], { start: 0, end: 2 });
      this.bsShapes.set(x, shape);
    }
    return shape;
  }

  /** RMSNorm over the last axis: x / sqrt(mean(x²) + eps) * w. */
  rmsNorm(x: string, weight: string): string {
    const g = this.g;
    if (this.fused) {
      // inv_std_var (the second output) is kept for the backward (see its VJP rule)
      return g.op('SimplifiedLayerNormalization', [x, this.w(weight)], { axis: -1, epsilon: { float: this.cfg.rmsNormEps } }, { outputs: 2 })[0];
    }
    const meanSq = g.op1('ReduceMean', [g.op1('Mul', [x, x]), g.int64([-1])], { keepdims: 1 });
    const inv = g.op1('Reciprocal', [g.op1('Sqrt', [g.op1('Add', [meanSq, this.scalar(this.cfg.rmsNormEps)])])]);
    return g.op1('Mul', [g.op1('Mul', [x, inv]), this.w(weight)]);
  }

  private get fused(): boolean {
    return !!this.opts.contribOps && this.opts.dtype === 'float32';
  }

  /** The RoPE tables at int64 positions [B,S] (with standard ops: cos/sin [B,1,S,hd/2] gathered). */
  rope(positions: string): RopeValues {
    const tables = ropeTables(this.cfg, this.opts.maxPositions ?? this.cfg.maxPositionEmbeddings, this.opts.dtype);
    const g = this.g;
    const cosTable = g.constant(tables.cos, 'rope_cos');
    const sinTable = g.constant(tables.sin, 'rope_sin');
    if (this.fused) return { positions, cosTable, sinTable };
    const gather = (t: string) => g.op1('Unsqueeze', [g.op1('Gather', [t, positions], { axis: 0 }), g.int64([1])]);
    return { positions, cosTable, sinTable, cos: gather(cosTable), sin: gather(sinTable) };
  }

  /** HF rotate_half convention on x [B,heads,S,hd]. */
  applyRope(x: string, rope: RopeValues): string {
    const g = this.g;
    if (!rope.cos || !rope.sin) return g.op1('RotaryEmbedding', [x, rope.positions, rope.cosTable, rope.sinTable], { interleaved: 0 }, MS_DOMAIN);
    const half = this.cfg.headDim / 2;
    const x1 = g.op1('Slice', [x, g.int64([0]), g.int64([half]), g.int64([3])]);
    const x2 = g.op1('Slice', [x, g.int64([half]), g.int64([this.cfg.headDim]), g.int64([3])]);
    const r1 = g.op1('Sub', [g.op1('Mul', [x1, rope.cos]), g.op1('Mul', [x2, rope.sin])]);
    const r2 = g.op1('Add', [g.op1('Mul', [x2, rope.cos]), g.op1('Mul', [x1, rope.sin])]);
    return g.op1('Concat', [r1, r2], { axis: 3 });
  }

  /** [B,S,heads*hd] → [B,heads,S,hd] */
  splitHeads(x: string, heads: number): string {
    const g = this.g;
    const r = g.op1('Reshape', [x, g.int64([0, 0, heads, this.cfg.headDim])]);
    return g.op1('Transpose', [r], { perm: [0, 2, 1, 3] });
  }

  /**
   * Self-attention of layer i on normalised x [B,S,D]; `bias` [B,1,S,L] is 0 where a key may be
   * attended and very negative elsewhere. With `past` ([B,kvH,P,hd] each), keys are past ++ new.
   */
  attention(i: number, x: string, rope: RopeValues, bias: string, past?: KvPair, cache: KvCacheMode = 'concat'): { out: string; present: KvPair } {
    const { g, cfg } = this;
    const p = `model.layers.${i}.self_attn`;
    const b = (n: string) => (cfg.attentionBias ? `${p}.${n}_proj.bias` : undefined);
    const q = this.applyRope(this.splitHeads(this.linear(x, `${p}.q_proj.weight`, b('q')), cfg.numHeads), rope);
    let k = this.applyRope(this.splitHeads(this.linear(x, `${p}.k_proj.weight`, b('k')), cfg.numKvHeads), rope);
    let v = this.splitHeads(this.linear(x, `${p}.v_proj.weight`, b('v')), cfg.numKvHeads);
    const hd = cfg.headDim;
    // GQA without copying K/V: query heads h = kv*rep + r share kv head `kv`, so group them:
    // q [B,H,S,hd] → [B,kvH,rep*S,hd] and multiply by k [B,kvH,L,hd] directly.
    const qg = g.op1('Reshape', [q, g.int64([0, cfg.numKvHeads, -1, hd])]);
    if (past && cache === 'append') return { out: this.attendPastAndNew(i, qg, k, v, bias, past), present: { key: k, value: v } };
    if (past) {
      k = g.op1('Concat', [past.key, k], { axis: 2 });
      v = g.op1('Concat', [past.value, v], { axis: 2 });
    }
    const scores = g.op1('Mul', [g.op1('MatMul', [qg, g.op1('Transpose', [k], { perm: [0, 1, 3, 2] })]), this.scalar(1 / Math.sqrt(hd))]);
    const perHead = g.op1('Reshape', [scores, g.int64([0, cfg.numHeads, -1, 0])]); // [B,H,S,L]
    const probs = g.op1('Softmax', [g.op1('Add', [perHead, bias])], { axis: -1 });
    const grouped = g.op1('Reshape', [probs, g.int64([0, cfg.numKvHeads, -1, 0])]); // [B,kvH,rep*S,L]
    const ctx = g.op1('Reshape', [g.op1('MatMul', [grouped, v]), g.int64([0, cfg.numHeads, -1, hd])]); // [B,H,S,hd]
    const merged = g.op1('Reshape', [g.op1('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.int64([0, 0, cfg.numHeads * hd])]);
    return { out: this.linear(merged, `${p}.o_proj.weight`), present: { key: k, value: v } };
  }

  /**
   * Attention over past ++ new keys without forming past ++ new: scores against each part, one
   * softmax over both, then the two weighted sums added. qg [B,kvH,rep*S,hd]; k, v new [B,kvH,S,hd].
   */
  private attendPastAndNew(i: number, qg: string, k: string, v: string, bias: string, past: KvPair): string {
    const { g, cfg } = this;
    const hd = cfg.headDim;
    const scoresOf = (keys: string) => g.op1('MatMul', [qg, g.op1('Transpose', [keys], { perm: [0, 1, 3, 2] })]);
    const scores = g.op1('Mul', [g.op1('Concat', [scoresOf(past.key), scoresOf(k)], { axis: -1 }), this.scalar(1 / Math.sqrt(hd))]);
    const perHead = g.op1('Reshape', [scores, g.int64([0, cfg.numHeads, -1, 0])]); // [B,H,S,P+S]
    const probs = g.op1('Softmax', [g.op1('Add', [perHead, bias])], { axis: -1 });
    const grouped = g.op1('Reshape', [probs, g.int64([0, cfg.numKvHeads, -1, 0])]); // [B,kvH,rep*S,P+S]
    const P = g.op1('Shape', [past.key], { start: 2, end: 3 });
    const axis = g.int64([3]);
    const onPast = g.op1('Slice', [grouped, g.int64([0]), P, axis]);
    const onNew = g.op1('Slice', [grouped, P, g.int64([INT64_MAX_SAFE]), axis]);
    const ctxGrouped = g.op1('Add', [g.op1('MatMul', [onPast, past.value]), g.op1('MatMul', [onNew, v])]);
    const ctx = g.op1('Reshape', [ctxGrouped, g.int64([0, cfg.numHeads, -1, hd])]); // [B,H,S,hd]
    const merged = g.op1('Reshape', [g.op1('Transpose', [ctx], { perm: [0, 2, 1, 3] }), g.int64([0, 0, cfg.numHeads * hd])]);
    return this.linear(merged, `model.layers.${i}.self_attn.o_proj.weight`);
  }

  mlp(i: number, x: string): string {
    const g = this.g;
    const p = `model.layers.${i}.mlp`;
    const gate = this.linear(x, `${p}.gate_proj.weight`);
    const silu = this.fused ? g.op1('QuickGelu', [gate], { alpha: { float: 1 } }, MS_DOMAIN) : g.op1('Mul', [gate, g.op1('Sigmoid', [gate])]);
    return this.linear(g.op1('Mul', [silu, this.linear(x, `${p}.up_proj.weight`)]), `${p}.down_proj.weight`);
  }

  /** Embedding → decoder layers → hidden states [B,S,D] (before the final norm). */
  decoder(inputIds: string, positions: string, bias: string, past?: KvPair[], cache?: KvCacheMode): { hidden: string; present: KvPair[] } {
    const g = this.g;
    let h = g.op1('Gather', [this.w('model.embed_tokens.weight'), inputIds], { axis: 0 });
    const rope = this.rope(positions);
    const present: KvPair[] = [];
    for (let i = 0; i < this.cfg.numLayers; i++) {
      const p = `model.layers.${i}`;
      const att = this.attention(i, this.rmsNorm(h, `${p}.input_layernorm.weight`), rope, bias, past?.[i], cache);
      present.push(att.present);
      h = g.op1('Add', [h, att.out]);
      h = g.op1('Add', [h, this.mlp(i, this.rmsNorm(h, `${p}.post_attention_layernorm.weight`))]);
    }
    return { hidden: h, present };
  }

  lmHead(h: string): string {
    const normed = this.rmsNorm(h, 'model.norm.weight');
    return this.linear(normed, this.cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
  }

  /**
   * Additive attention bias [B,1,S,L]: query s (padded index P+s, P = L−S) may attend key j when
   * j ≤ P+s and mask[b,j] = 1.
   */
  maskBias(attentionMask: string, newTokens: string): string {
    const g = this.g;
    const scalarDim = (shape: string) => g.op1('Reshape', [shape, g.int64([], [0])]);
    const total = scalarDim(g.op1('Shape', [attentionMask], { start: 1, end: 2 }));
    const fresh = scalarDim(g.op1('Shape', [newTokens], { start: 1, end: 2 }));
    const one = g.int64([1], []);
    const keyIdx = g.op1('Range', [g.int64([0], []), total, one]); // [L]
    const queryIdx = g.op1('Range', [g.op1('Sub', [total, fresh]), total, one]); // [S]
    const causal = g.op1('LessOrEqual', [
      g.op1('Unsqueeze', [keyIdx, g.int64([0])]),
      g.op1('Unsqueeze', [queryIdx, g.int64([1])]),
    ]); // [S,L]
    const keyOk = g.op1('Unsqueeze', [g.op1('Cast', [attentionMask], { to: 9 /* BOOL */ }), g.int64([1, 2])]); // [B,1,1,L]
    const allowed = g.op1('And', [causal, keyOk]);
    return g.op1('Where', [allowed, this.scalar(0), this.scalar(-1e9)]);
  }

  /**
   * Additive attention bias [B,1,T,T] of packed rows (TeacherForcedOptions.packed): query q may attend
   * key k ≤ q when k is a token (segment ≠ 0) of the shared prefix (segment 1) or of q's own segment.
   */
  segmentBias(segmentIds: string): string {
    const g = this.g;
    const T = g.op1('Reshape', [g.op1('Shape', [segmentIds], { start: 1, end: 2 }), g.int64([], [0])]);
    const idx = g.op1('Range', [g.int64([0], []), T, g.int64([1], [])]);
    const causal = g.op1('LessOrEqual', [g.op1('Unsqueeze', [idx, g.int64([0])]), g.op1('Unsqueeze', [idx, g.int64([1])])]); // [T(q),T(k)]
    const keySeg = g.op1('Unsqueeze', [segmentIds, g.int64([1, 2])]); // [B,1,1,T]
    const querySeg = g.op1('Unsqueeze', [segmentIds, g.int64([1, 3])]); // [B,1,T,1]
    const shared = g.op1('Equal', [keySeg, g.int64([1], [])]);
    const own = g.op1('And', [g.op1('Equal', [keySeg, querySeg]), g.op1('Not', [g.op1('Equal', [keySeg, g.int64([0], [])])])]);
    const allowed = g.op1('And', [causal, g.op1('Or', [shared, own])]);
    return g.op1('Where', [allowed, this.scalar(0), this.scalar(-1e9)]);
  }
}

/** Graph A: teacher-forced per-token log-probs [B,T-1] of ids[:,1:], and optionally logits [B,T,V]. */
export function emitLlamaForward(g: GraphBuilder, cfg: LlamaConfig, opts: TeacherForcedOptions): { logProbs: string; logits?: string } {
  const e = new Emitter(g, cfg, opts);
  const flat = (x: string, inner: number[]) => g.op1('Reshape', [x, g.int64([-1, ...inner])]);
  // log-probs of targets [R,1,1] from hidden states [R,1,D] (the final norm is per position, so it commutes)
  const logProbsAt = (hidden: string, targets: string) => {
    const picked = g.op1('GatherElements', [g.op1('LogSoftmax', [e.lmHead(hidden)], { axis: -1 }), targets], { axis: -1 });
    return g.op1('Reshape', [picked, g.int64([-1])]);
  };
  if (opts.packed) {
    const { positionIds, segmentIds, predictFrom, targets } = opts.packed;
    const { hidden } = e.decoder(opts.inputIds, positionIds, e.segmentBias(segmentIds));
    const at = g.op1('Gather', [flat(hidden, [1, cfg.hiddenSize]), predictFrom], { axis: 0 });
    return { logProbs: logProbsAt(at, flat(targets, [1, 1])) };
  }
  const mask = opts.attentionMask;
  if (!mask) throw new Error('teacher-forced graph: an attention mask or packed rows are needed');
  // positions = cumsum(mask) − 1 on tokens, 0 on padding
  const positions = g.op1('Mul', [g.op1('Sub', [g.op1('CumSum', [mask, g.int64([1], [])]), g.int64([1], [])]), mask]);
  const { hidden } = e.decoder(opts.inputIds, positions, e.maskBias(mask, opts.inputIds));
  const sliceT = (x: string, start: number, end: number) => g.op1('Slice', [x, g.int64([start]), g.int64([end]), g.int64([1])]);
  if (opts.predictAt) {
    const chosen = g.op1('Gather', [flat(sliceT(hidden, 0, -1), [1, cfg.hiddenSize]), opts.predictAt], { axis: 0 });
    const targets = g.op1('Gather', [flat(sliceT(opts.inputIds, 1, INT64_MAX_SAFE), [1, 1]), opts.predictAt], { axis: 0 }); // [R,1,1]
    return { logProbs: logProbsAt(chosen, targets) };
  }
  let logits: string | undefined;
  let predicting: string; // logits [B,T-1,V] at positions that predict a next token
  if (opts.logits) {
    logits = e.lmHead(hidden);
    predicting = sliceT(logits, 0, -1);
  } else {
    predicting = e.lmHead(sliceT(hidden, 0, -1));
  }
  const logSoftmax = g.op1('LogSoftmax', [predicting], { axis: -1 });
  const targets = g.op1('Unsqueeze', [sliceT(opts.inputIds, 1, INT64_MAX_SAFE), g.int64([-1])]);
  const picked = g.op1('GatherElements', [logSoftmax, targets], { axis: -1 });
  const logProbs = g.op1('Reshape', [picked, g.int64([0, -1])]);
  return logits ? { logProbs, logits } : { logProbs };
}

/** Graph B: one decode step; returns last-position logits (or log-probs) [B,V] and present (or, with cache 'append', new) K/V per layer. */
export function emitLlamaDecodeStep(g: GraphBuilder, cfg: LlamaConfig, opts: DecodeStepOptions): { last: string; present: KvPair[] } {
  if (opts.past.length !== cfg.numLayers) throw new Error(`decode step: ${opts.past.length} past K/V pairs for ${cfg.numLayers} layers`);
  const e = new Emitter(g, cfg, opts);
  const { hidden, present } = e.decoder(opts.inputIds, opts.positionIds, e.maskBias(opts.attentionMask, opts.inputIds), opts.past, opts.cache);
  const lastHidden = g.op1('Slice', [hidden, g.int64([-1]), g.int64([INT64_MAX_SAFE]), g.int64([1])]);
  const logits = g.op1('Reshape', [e.lmHead(lastHidden), g.int64([0, -1])]);
  const last = opts.last === 'logProbs' ? g.op1('LogSoftmax', [logits], { axis: -1 }) : logits;
  return { last, present };
}

/** A stored weight (f32/f64/f16/bf16) in the graph's float dtype (float64 from the float32 values). */
export function toFloat(t: HostTensor, dtype: FloatDType): HostTensor {
  if (t.dtype === dtype) return t;
  if (dtype === 'float32') return { dtype, shape: t.shape, data: toFloat32(t) };
  const data = t.dtype === 'float64' ? (t.data as Float64Array) : Float64Array.from(toFloat32(t));
  return { dtype, shape: t.shape, data };
}

/** A weight callback that stores each HF tensor as an initializer (checking its shape). */
export function initializerWeights(g: GraphBuilder, weights: Weights, dtype: FloatDType): (name: string, shape: number[]) => string {
  return (name, shape) => {
    const t = weights.get(name);
    if (!t) throw new Error(`model weights: missing tensor ${name}`);
    if (t.shape.join(',') !== shape.join(',')) throw new Error(`model weights: ${name} has shape [${t.shape}], the config implies [${shape}]`);
    return g.initializer(name, toFloat(t, dtype));
  };
}

export interface BuildOptions {
  dtype?: FloatDType;
  maxPositions?: number;
  /** Default 'gemm' (these builders make inference graphs). */
  linear?: 'matmul' | 'gemm';
  /** A Linear hook made for the graph being built (e.g. a LoRA adapter's terms; see lora-graph.ts). */
  adapter?: (g: GraphBuilder) => LinearAdapter;
}

/**
 * Graph A as a whole model: inputs input_ids, attention_mask; outputs log_probs [B,T-1] (+ logits [B,T,V]).
 * `predictAt`: also an input predict_at int64 [R] (flat indices into the B×(T−1) predicting positions);
 * log_probs is then [R] and the lm_head and log-softmax run on those R rows only (a scorer's response tokens).
 */
export function buildTeacherForcedGraph(cfg: LlamaConfig, weights: Weights, opts: BuildOptions & { logits?: boolean; predictAt?: boolean } = {}): GraphBuilder {
  const dtype = opts.dtype ?? 'float32';
  const g = new GraphBuilder('llama_teacher_forced');
  const inputIds = g.input('input_ids', 'int64', ['batch', 'seq']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const predictAt = opts.predictAt ? g.input('predict_at', 'int64', ['rows']) : undefined;
  const out = emitLlamaForward(g, cfg, { dtype, weight: initializerWeights(g, weights, dtype), inputIds, attentionMask, logits: opts.logits, predictAt, maxPositions: opts.maxPositions, linear: opts.linear ?? 'gemm', adapter: opts.adapter?.(g) });
  g.output(out.logProbs, dtype, predictAt ? ['rows'] : ['batch', 'seq_minus_1'], 'log_probs');
  if (out.logits) g.output(out.logits, dtype, ['batch', 'seq', cfg.vocabSize], 'logits');
  return g;
}

/** Input/output names of the decode-step graph. */
export const pastKeyName = (i: number) => `past_key.${i}`;
export const pastValueName = (i: number) => `past_value.${i}`;
export const presentKeyName = (i: number) => `present_key.${i}`;
export const presentValueName = (i: number) => `present_value.${i}`;
/** Outputs of the decode-step graph built with cache 'append': the new tokens' K/V only. */
export const newKeyName = (i: number) => `new_key.${i}`;
export const newValueName = (i: number) => `new_value.${i}`;

/**
 * Graph B as a whole model: inputs input_ids [B,S], position_ids [B,S], attention_mask [B,P+S],
 * past_key.i / past_value.i [B,kvH,P,hd]; outputs logits (or log_probs) [B,V] for the last position and
 * present_key.i / present_value.i [B,kvH,P+S,hd] (cache 'concat', the default) or new_key.i /
 * new_value.i [B,kvH,S,hd] (cache 'append').
 */
export function buildDecodeStepGraph(cfg: LlamaConfig, weights: Weights, opts: BuildOptions & { last?: 'logits' | 'logProbs'; cache?: KvCacheMode } = {}): GraphBuilder {
  const dtype = opts.dtype ?? 'float32';
  const g = new GraphBuilder('llama_decode_step');
  const inputIds = g.input('input_ids', 'int64', ['batch', 'new']);
  const positionIds = g.input('position_ids', 'int64', ['batch', 'new']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch', 'total']);
  const kvShape = ['batch', cfg.numKvHeads, 'past', cfg.headDim];
  const past: KvPair[] = [];
  for (let i = 0; i < cfg.numLayers; i++) {
    past.push({ key: g.input(pastKeyName(i), dtype, kvShape), value: g.input(pastValueName(i), dtype, kvShape) });
  }
  const out = emitLlamaDecodeStep(g, cfg, { dtype, weight: initializerWeights(g, weights, dtype), inputIds, positionIds, attentionMask, past, last: opts.last, maxPositions: opts.maxPositions, linear: opts.linear ?? 'gemm', cache: opts.cache, adapter: opts.adapter?.(g) });
  g.output(out.last, dtype, ['batch', cfg.vocabSize], opts.last === 'logProbs' ? 'log_probs' : 'logits');
  const append = opts.cache === 'append';
  const presentShape = ['batch', cfg.numKvHeads, append ? 'new' : 'total', cfg.headDim];
  out.present.forEach((kv, i) => {
    g.output(kv.key, dtype, presentShape, append ? newKeyName(i) : presentKeyName(i));
    g.output(kv.value, dtype, presentShape, append ? newValueName(i) : presentValueName(i));
  });
  return g;
}
