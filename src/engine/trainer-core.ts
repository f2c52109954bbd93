import * as ort from 'onnxruntime-node';
import type { LlamaConfig } from '../model/llama-config.ts';
import { llamaParameterShapes, toFloat, type FloatDType } from '../model/llama-graph.ts';
import type { HostTensor, Weights } from '../model/tensor.ts';
import { serializeModel, GraphBuilder } from '../onnx/builder.ts';
import { checkProvider, toOrt, type ExecutionProvider } from '../onnx/session.ts';
import { emitLlamaForward } from '../model/llama-graph.ts';
import { emitResponsePositions } from '../losses/response-positions.ts';
import { emitSequenceLogps } from '../losses/sequence-logps.ts';
import { ADAMW_DEFAULTS, adamwUpdate, type AdamWConfig } from '../optim/adamw.ts';
import { learningRateAt } from '../optim/schedule.ts';
import { buildGradsGraph, accName, gradName, packsPairs, trainedShapes, type LossKind, type TrainGraphSpec } from './trainer-graph.ts';
import { initAdapter, mergeAdapter, type LoraConfig } from '../model/lora.ts';
import { loraLinearAdapter } from '../model/lora-graph.ts';
import { chunk, collateRows, ktoMismatchedRows, packPreferencePairs, preferenceRows, type PreferencePair, type Row, type SftExample } from './trainer-batch.ts';

/**
 * The trainer engine's state and step, run in whichever thread owns it (trainer-worker.ts hosts it
 * in a worker). Parameters, AdamW moments m and v and the gradients each live in one flat host
 * array, every tensor a view of its slice, fed to onnxruntime without copying.
 *
 * One optimizer step = one grads run per micro-batch, whose gradient outputs are bound to the flat
 * gradient array (the producing nodes write there; with several micro-batches each run adds its
 * gradients to what is there), then one host AdamW pass over the flat arrays (optim/adamw.ts).
 * With `lora`, the trained tensors (and so the flat arrays) are the adapter's; the model's weights
 * are frozen graph inputs, with no gradient or moment.
 */

export interface TrainerOptions {
  loss: LossKind;
  beta: number;
  /** rdpo's length penalty α. */
  alpha?: number;
  lr: number;
  /** Linear warm-up steps of the constant schedule (paper: 50). */
  warmupSteps: number;
  adamw?: Partial<AdamWConfig>;
  /** Pairs (or SFT examples) per onnxruntime run; a batch with more is accumulated. Default: whole batch. */
  microBatch?: number;
  dtype?: FloatDType;
  provider?: ExecutionProvider;
  threads?: number;
  /** Longest sequence (rows of the RoPE tables); default config.maxPositionEmbeddings. */
  maxPositions?: number;
  padTokenId?: number;
  /** Whether onnxruntime's idle intra-op threads spin (its default: yes); see SessionConfig.spinning. */
  spinning?: boolean;
  /** onnxruntime's profiler on the train sessions: JSON files with this prefix, written on release(). */
  profileFilePrefix?: string;
  /**
   * Train a LoRA adapter on frozen weights: `adapter` to continue (PEFT names), else a fresh one
   * (PEFT's init from `seed`, B = 0, so the policy starts equal to the weights it was given).
   */
  lora?: { config: LoraConfig; adapter?: Weights; seed?: number };
  /** Preference losses: run each pair's prompt once for both responses (TrainGraphSpec.sharedPrompt). Default true. */
  sharedPrompt?: boolean;
}

export type TrainBatch =
  | { kind: 'preference'; pairs: PreferencePair[]; /** kto: reference log-probs of ktoMismatchedRows(pairs) */ refMismatchedLogps?: number[] }
  | { kind: 'sft'; examples: SftExample[] };

export interface StepMetrics {
  /** Optimizer steps completed, this one included. */
  step: number;
  lr: number;
  loss: number;
  /** Fraction of pairs whose chosen implicit reward exceeds the rejected one. */
  rewardAccuracy: number;
  chosenReward: number;
  rejectedReward: number;
  margin: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Of `seconds`, the host AdamW update's. */
  optimizerSeconds: number;
  examples: number;
  tokens: number;
  microBatches: number;
  seconds: number;
}

export interface TrainerState {
  step: number;
  params: Weights;
  m: Weights;
  v: Weights;
}

type Buffer = Float32Array | Float64Array;

export class TrainerCore {
  private readonly names: string[];
  private readonly shapes: Map<string, number[]>;
  /** Flat arrays, and per parameter name a view of its slice. */
  private readonly flat: { params: Buffer; m: Buffer; v: Buffer; grads: Buffer };
  private readonly params = new Map<string, Buffer>();
  private readonly m = new Map<string, Buffer>();
  private readonly v = new Map<string, Buffer>();
  private readonly grads = new Map<string, Buffer>();
  /** LoRA: the frozen model weights (fed to every graph, never updated); empty otherwise. */
  private readonly frozen = new Map<string, Buffer>();
  private readonly frozenShapes: Map<string, number[]>;
  private stepsDone = 0;
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  readonly dtype: FloatDType;
  private readonly spec: TrainGraphSpec;
  private readonly adamw: AdamWConfig;

  constructor(
    readonly config: LlamaConfig,
    weights: Weights,
    readonly options: TrainerOptions,
  ) {
    this.dtype = options.dtype ?? 'float32';
    const lora = options.lora;
    this.shapes = trainedShapes({ config, lora: lora?.config });
    this.names = [...this.shapes.keys()];
    this.frozenShapes = lora ? llamaParameterShapes(config) : new Map();
    for (const [name, shape] of this.frozenShapes) {
      const t = weights.get(name);
      if (!t) throw new Error(`trainer: the model has no tensor ${name}`);
      if (t.shape.join(',') !== shape.join(',')) throw new Error(`trainer: ${name} has shape [${t.shape}], the config implies [${shape}]`);
      this.frozen.set(name, toFloat(t, this.dtype).data as Buffer); // read only: no copy needed
    }
    // the flat arrays hold exactly the trained tensors: every weight, or (LoRA) the adapter's
    const initial = lora ? (lora.adapter ?? initAdapter(config, lora.config, lora.seed ?? 0)) : weights;
    const sizes = this.names.map((name) => this.shapes.get(name)!.reduce((a, b) => a * b, 1));
    const total = sizes.reduce((a, b) => a + b, 0);
    const alloc = (): Buffer => (this.dtype === 'float64' ? new Float64Array(total) : new Float32Array(total));
    this.flat = { params: alloc(), m: alloc(), v: alloc(), grads: alloc() };
    let offset = 0;
    this.names.forEach((name, k) => {
      const t = initial.get(name);
      if (!t) throw new Error(`trainer: the ${lora ? 'adapter' : 'model'} has no tensor ${name}`);
      const view = (b: Buffer) => b.subarray(offset, offset + sizes[k]);
      this.params.set(name, view(this.flat.params));
      this.m.set(name, view(this.flat.m));
      this.v.set(name, view(this.flat.v));
      this.grads.set(name, view(this.flat.grads));
      this.params.get(name)!.set(toFloat(t, this.dtype).data as Buffer);
      offset += sizes[k];
    });
    if (options.beta <= 0 && options.loss !== 'sft') throw new Error(`trainer: beta must be > 0 (got ${options.beta})`);
    this.spec = {
      config,
      dtype: this.dtype,
      loss: options.loss,
      beta: options.beta,
      alpha: options.alpha,
      maxPositions: options.maxPositions,
      lora: lora?.config,
      sharedPrompt: options.sharedPrompt ?? true,
    };
    this.adamw = { ...ADAMW_DEFAULTS, ...options.adamw };
  }

  /** Restores optimizer state (e.g. from a checkpoint's optimizer file). */
  setState(state: { step: number; m?: Weights; v?: Weights }): void {
    this.stepsDone = state.step;
    for (const [which, src] of [[this.m, state.m], [this.v, state.v]] as const) {
      if (!src) continue;
      for (const name of this.names) {
        const t = src.get(name);
        if (!t) throw new Error(`trainer state: missing ${name}`);
        which.get(name)!.set(toFloat(t, this.dtype).data as Buffer);
      }
    }
  }

  get steps(): number {
    return this.stepsDone;
  }

  private tensor(name: string, data: Buffer): ort.Tensor {
    return new ort.Tensor(this.dtype, data, this.shapes.get(name) ?? this.frozenShapes.get(name)!);
  }

  private scalar(x: number): ort.Tensor {
    return new ort.Tensor(this.dtype, this.dtype === 'float64' ? Float64Array.of(x) : Float32Array.of(x), []);
  }

  private session(kind: 'grads' | 'grads-acc' | 'logps' | 'base-logps'): Promise<ort.InferenceSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      const graph = kind === 'logps' || kind === 'base-logps' ? this.logpsGraph(kind === 'logps') : buildGradsGraph(this.spec, { accumulate: kind === 'grads-acc' });
      s = createTrainSession(serializeModel(graph), {
        provider: this.options.provider ?? 'cpu',
        threads: this.options.threads ?? 1,
        // onnxruntime's x·sigmoid(x) → QuickGelu fusion has no float64 kernel
        optimization: this.dtype === 'float64' ? 'basic' : 'all',
        profileFilePrefix: this.options.profileFilePrefix ? `${this.options.profileFilePrefix}-${kind}` : undefined,
        spinning: this.options.spinning,
        memoryPattern: kind !== 'logps' && kind !== 'base-logps' && packsPairs(this.spec),
      });
      s.catch(() => this.sessions.delete(kind));
      this.sessions.set(kind, s);
    }
    return s;
  }

  /** Sequence log-probs; `adapted` false: of the frozen weights alone (a LoRA policy's adapter off). */
  private logpsGraph(adapted: boolean): GraphBuilder {
    const g = new GraphBuilder('policy_logps');
    const ids = g.input('input_ids', 'int64', ['rows', 'seq']);
    const mask = g.input('attention_mask', 'int64', ['rows', 'seq']);
    const resp = g.input('response_mask', this.dtype, ['rows', 'seq_minus_1']);
    const at = emitResponsePositions(g, resp);
    const { logProbs } = emitLlamaForward(g, this.config, {
      dtype: this.dtype,
      inputIds: ids,
      attentionMask: mask,
      predictAt: at.index,
      maxPositions: this.options.maxPositions,
      linear: 'gemm',
      contribOps: true,
      weight: (name, shape) => g.input(name, this.dtype, shape),
      adapter: adapted && this.spec.lora ? loraLinearAdapter(g, this.config, this.spec.lora, { linear: 'gemm', dtype: this.dtype }, (name, shape) => g.input(name, this.dtype, shape)) : undefined,
    });
    g.output(emitSequenceLogps(g, logProbs, at), this.dtype, ['rows'], 'policy_logps');
    return g;
  }

  private paramFeeds(feeds: Record<string, ort.Tensor>, session: ort.InferenceSession): void {
    const wanted = new Set(session.inputNames);
    for (const name of this.names) if (wanted.has(name)) feeds[name] = this.tensor(name, this.params.get(name)!);
    for (const [name, data] of this.frozen) if (wanted.has(name)) feeds[name] = this.tensor(name, data);
  }

  /** Summed response log-probs of rows under the current policy (no gradient). */
  policyLogps(rows: Row[]): Promise<number[]> {
    return this.sequenceLogps(rows, 'logps');
  }

  /**
   * A LoRA trainer's reference: log-probs under the frozen weights, the adapter off — the policy's
   * starting point, with no second copy of the weights.
   */
  baseLogps(rows: Row[]): Promise<number[]> {
    if (!this.spec.lora) throw new Error('trainer: baseLogps is for a LoRA trainer (its weights without the adapter)');
    return this.sequenceLogps(rows, 'base-logps');
  }

  private async sequenceLogps(rows: Row[], kind: 'logps' | 'base-logps'): Promise<number[]> {
    const session = await this.session(kind);
    const out: number[] = [];
    for (const part of chunk(rows, this.options.microBatch ? this.options.microBatch * 2 : rows.length)) {
      const c = collateRows(part, this.dtype, this.options.padTokenId ?? 0);
      const feeds: Record<string, ort.Tensor> = { input_ids: toOrt(c.input_ids), attention_mask: toOrt(c.attention_mask), response_mask: toOrt(c.response_mask) };
      this.paramFeeds(feeds, session);
      const r = await session.run(feeds, ['policy_logps']);
      out.push(...Array.from(r.policy_logps.data as Buffer));
    }
    return out;
  }

  /** One optimizer step over the batch (accumulating micro-batches); returns the step's metrics. */
  async step(batch: TrainBatch): Promise<StepMetrics> {
    const started = performance.now();
    const isSft = this.options.loss === 'sft';
    if ((batch.kind === 'sft') !== isSft) throw new Error(`trainer: a ${batch.kind} batch cannot train the ${this.options.loss} loss`);
    const micro = this.microBatches(batch);
    const units = isSft
      ? (batch as { examples: SftExample[] }).examples.reduce((s, e) => s + e.completionTokenIds.length, 0)
      : (batch as { pairs: PreferencePair[] }).pairs.length * (this.options.loss === 'kto' ? 2 : 1);
    const ktoZ0 = this.options.loss === 'kto' && batch.kind === 'preference' ? await this.ktoReference(batch) : undefined;
    const lr = learningRateAt({ lr: this.options.lr, warmupSteps: this.options.warmupSteps }, this.stepsDone);
    const t = this.stepsDone + 1;
    const sums = { loss: 0, correct: 0, margin: 0, chosen: 0, rejected: 0, tokens: 0 };
    const addMetrics = (r: ort.InferenceSession.ReturnType, tokens: number) => {
      sums.loss += Number(r.loss.data[0]);
      sums.correct += Number(r.correct_sum.data[0]);
      sums.margin += Number(r.margin_sum.data[0]);
      sums.chosen += Number(r.chosen_reward_sum.data[0]);
      sums.rejected += Number(r.rejected_reward_sum.data[0]);
      sums.tokens += tokens;
    };
    const metricNames = ['loss', 'correct_sum', 'margin_sum', 'chosen_reward_sum', 'rejected_reward_sum'];
    // one micro-batch: its run writes the gradients; several: each run adds its gradients to the
    // buffer (input acc.<name> and output grad.<name> bound to the same view; the Add reads each
    // element before writing it, and nothing else reads acc)
    const accumulate = micro.length > 1;
    if (accumulate) this.flat.grads.fill(0);
    const session = await this.session(accumulate ? 'grads-acc' : 'grads');
    for (const part of micro) {
      const { feeds, tokens } = this.batchFeeds(part, units, ktoZ0);
      this.paramFeeds(feeds, session);
      const fetches: Record<string, ort.Tensor | null> = {};
      for (const n of metricNames) fetches[n] = null;
      for (const name of this.names) {
        if (accumulate) feeds[accName(name)] = this.tensor(name, this.grads.get(name)!);
        fetches[gradName(name)] = this.tensor(name, this.grads.get(name)!);
      }
      const r = await session.run(feeds, fetches);
      addMetrics(r, tokens);
    }
    const optimizerStarted = performance.now();
    const gradNorm = adamwUpdate({ param: this.flat.params, m: this.flat.m, v: this.flat.v, grad: this.flat.grads }, lr, t, this.adamw);
    const optimizerSeconds = (performance.now() - optimizerStarted) / 1000;
    this.stepsDone = t;
    const pairs = isSft ? 0 : (batch as { pairs: PreferencePair[] }).pairs.length;
    return {
      step: t,
      lr,
      loss: sums.loss,
      rewardAccuracy: pairs ? sums.correct / pairs : 0,
      chosenReward: pairs ? sums.chosen / pairs : 0,
      rejectedReward: pairs ? sums.rejected / pairs : 0,
      margin: pairs ? sums.margin / pairs : 0,
      gradNorm,
      optimizerSeconds,
      examples: isSft ? (batch as { examples: SftExample[] }).examples.length : pairs,
      tokens: sums.tokens,
      microBatches: micro.length,
      seconds: (performance.now() - started) / 1000,
    };
  }

  private microBatches(batch: TrainBatch): Array<PreferencePair[] | SftExample[]> {
    const items: Array<PreferencePair | SftExample> = batch.kind === 'sft' ? batch.examples : batch.pairs;
    if (items.length === 0) throw new Error('trainer: empty batch');
    return chunk(items, this.options.microBatch ?? items.length) as Array<PreferencePair[] | SftExample[]>;
  }

  private async ktoReference(batch: { pairs: PreferencePair[]; refMismatchedLogps?: number[] }): Promise<number> {
    const ref = batch.refMismatchedLogps;
    if (!ref || ref.length !== batch.pairs.length) {
      throw new Error('trainer: the kto loss needs refMismatchedLogps (reference log-probs of ktoMismatchedRows(pairs)), one per pair');
    }
    const policy = await this.policyLogps(ktoMismatchedRows(batch.pairs));
    const kl = policy.reduce((s, p, i) => s + p - ref[i], 0) / policy.length;
    return Math.max(0, kl);
  }

  private batchFeeds(part: PreferencePair[] | SftExample[], units: number, ktoZ0: number | undefined): { feeds: Record<string, ort.Tensor>; tokens: number } {
    const isSft = this.options.loss === 'sft';
    const padId = this.options.padTokenId ?? 0;
    let feeds: Record<string, ort.Tensor>;
    let tokens: number;
    if (packsPairs(this.spec)) {
      const packed = packPreferencePairs(part as PreferencePair[], padId);
      const names = ['input_ids', 'position_ids', 'segment_ids', 'predict_from', 'predict_target', 'predict_row'] as const;
      feeds = Object.fromEntries(names.map((n) => [n, toOrt(packed[n])]));
      tokens = packed.responseTokens;
    } else {
      const rows: Row[] = isSft
        ? (part as SftExample[]).map((e) => ({ prompt: e.promptTokenIds, response: e.completionTokenIds }))
        : preferenceRows(part as PreferencePair[]);
      const c = collateRows(rows, this.dtype, padId);
      feeds = { input_ids: toOrt(c.input_ids), attention_mask: toOrt(c.attention_mask), response_mask: toOrt(c.response_mask) };
      tokens = c.responseTokens;
    }
    feeds.loss_weight = this.scalar(1 / units);
    const vec = (xs: number[]): ort.Tensor => new ort.Tensor(this.dtype, this.dtype === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs), [xs.length]);
    if (!isSft) {
      const pairs = part as PreferencePair[];
      feeds.ref_logps = vec([...pairs.map((p) => p.refChosenLogp), ...pairs.map((p) => p.refRejectedLogp)]);
      if (this.options.loss === 'rdpo') {
        feeds.lengths = vec([...pairs.map((p) => p.chosenLength ?? p.chosenTokenIds.length), ...pairs.map((p) => p.rejectedLength ?? p.rejectedTokenIds.length)]);
      }
      if (this.options.loss === 'kto') feeds.kto_z0 = this.scalar(ktoZ0 ?? 0);
    }
    return { feeds, tokens };
  }

  /** The policy's full weights as HF-named host tensors (copies, in the trainer's dtype; a LoRA policy's merged, in float32). */
  weights(): Weights {
    if (this.spec.lora) {
      const base: Weights = new Map([...this.frozen].map(([n, data]) => [n, { dtype: this.dtype, shape: this.frozenShapes.get(n)!, data } as HostTensor]));
      return mergeAdapter(this.config, base, { lora: this.spec.lora, weights: this.trained(), baseModel: null });
    }
    return this.trained();
  }

  /** LoRA: the adapter's current tensors (PEFT names, copies); null for full fine-tuning. */
  adapter(): { config: LoraConfig; weights: Weights } | null {
    return this.spec.lora ? { config: this.spec.lora, weights: this.trained() } : null;
  }

  /** The trained parameters (all weights, or the adapter's tensors), copied. */
  private trained(): Weights {
    const out: Weights = new Map();
    for (const name of this.names) out.set(name, { dtype: this.dtype, shape: this.shapes.get(name)!, data: this.params.get(name)!.slice() } as HostTensor);
    return out;
  }

  state(): TrainerState {
    const copy = (src: Map<string, Buffer>): Weights =>
      new Map(this.names.map((n) => [n, { dtype: this.dtype, shape: this.shapes.get(n)!, data: src.get(n)!.slice() } as HostTensor]));
    return { step: this.stepsDone, params: this.trained(), m: copy(this.m), v: copy(this.v) };
  }

  async release(): Promise<void> {
    // a session that failed to open has nothing to release (its error went to the step that asked)
    for (const s of this.sessions.values()) {
      await s.then(
        (x) => {
          if (this.options.profileFilePrefix) x.endProfiling();
          return x.release();
        },
        () => undefined,
      );
    }
    this.sessions.clear();
  }
}

/**
 * Like onnx/session.ts createSession, but without onnxruntime's CPU memory arena: a train step's
 * activations are large and short-lived, and the arena keeps every freed chunk (fragmented) for the
 * life of the session, which more than doubled the peak RSS measured here. `memoryPattern`: once a
 * batch shape has run, later runs of that shape take all their intermediate tensors from one planned
 * block instead of a fresh allocation (and its page faults) per tensor. On for the shared-prompt grads
 * graph, where it was measured (SmolLM2-135M 8 × 256: 30.2 → 24.0 s per step, peak RSS 10.2 → 8.8 GB);
 * the two-row layout ran faster with it too (31.1 → 27.7 s) but its peak RSS rose (12.3 → 14.8 GB).
 * A shared-prompt LoRA step (r = 16, 7 targets) trades a little memory for time: 22.9 → 20.5 s, 9.5 → 10.2 GB.
 */
async function createTrainSession(
  model: Uint8Array,
  cfg: { provider: ExecutionProvider; threads: number; optimization: 'basic' | 'all'; profileFilePrefix?: string; spinning?: boolean; memoryPattern: boolean },
): Promise<ort.InferenceSession> {
  checkProvider(cfg.provider);
  try {
    return await ort.InferenceSession.create(model, {
      executionProviders: [cfg.provider],
      intraOpNumThreads: cfg.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: cfg.optimization,
      enableCpuMemArena: false,
      enableMemPattern: cfg.memoryPattern,
      ...(cfg.profileFilePrefix ? { enableProfiling: true, profileFilePrefix: cfg.profileFilePrefix } : {}),
      ...(cfg.spinning === undefined ? {} : { extra: { session: { intra_op: { allow_spinning: cfg.spinning ? '1' : '0' } } } }),
    });
  } catch (err) {
    throw new Error(`onnxruntime could not load the train graph on '${cfg.provider}': ${(err as Error).message}`);
  }
}

