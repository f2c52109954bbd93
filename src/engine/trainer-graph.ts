import { GraphBuilder, type GraphNode } from '../onnx/builder.ts';
import type { LlamaConfig } from '../model/llama-config.ts';
import { emitLlamaForward, llamaParameterShapes, type FloatDType, type TeacherForcedOptions } from '../model/llama-graph.ts';
import { gradients } from '../autodiff/reverse.ts';
import { emitPreferenceLoss, type PreferenceLossKind } from '../losses/preference.ts';
import { emitListedResponsePositions, emitResponsePositions, type ResponsePositions } from '../losses/response-positions.ts';
import { emitSequenceLogps } from '../losses/sequence-logps.ts';
import { emitSftLoss } from '../losses/sft.ts';
import { loraParameterShapes, type LoraConfig } from '../model/lora.ts';
import { loraLinearAdapter } from '../model/lora-graph.ts';

/**
 * The training graphs. Parameters (HF names) are graph inputs; nothing is an
 * initializer except small constants, so one serialized graph is a few hundred kB at any model size.
 *
 *  grads  (params, batch[, acc.<name>]) → metrics + grad.<name> (+ acc)  one per micro-batch
 *
 * The AdamW update runs on the host in one pass over flat buffers (optim/adamw.ts), not as nodes.
 *
 * Batch inputs: input_ids, attention_mask int64 [N,T]; response_mask [N,T−1] (1 where the position
 * predicts a response token); loss_weight scalar (1 / units in the whole batch, so micro-batch
 * gradients sum to the full-batch mean). Preference losses: N = 2P rows, chosen rows first; ref_logps
 * [2P]; lengths [2P] (rdpo); kto_z0 scalar (kto). With `sharedPrompt`, P packed rows instead of the
 * mask inputs (see TrainGraphSpec.sharedPrompt); ref_logps and lengths keep the 2P layout.
 */

export type LossKind = PreferenceLossKind | 'sft';

export interface TrainGraphSpec {
  config: LlamaConfig;
  dtype: FloatDType;
  loss: LossKind;
  beta: number;
  /** rdpo's length penalty. */
  alpha?: number;
  /** RoPE table rows (longest sequence); default config.maxPositionEmbeddings. */
  maxPositions?: number;
  /**
   * Linear layers as Gemm(x, W, transB=1) on the stored weights (default): the Gemm VJP then yields
   * dW in the stored [out, in] layout and dx = dy·W, with no transposed weight copies in either pass.
   * 'matmul' is MatMul(x, Transpose(W)).
   */
  linear?: 'gemm' | 'matmul';
  /** float32: RMSNorm, RoPE and SiLU as onnxruntime's fused kernels (see LlamaEmitOptions.contribOps). Default true. */
  contribOps?: boolean;
  /**
   * Train a LoRA adapter instead of the weights: the model's weights are still graph inputs but
   * frozen (no gradient, no optimizer state); the trained parameters and grad.* are the adapter's
   * tensors (PEFT names, see model/lora.ts), as are the trainer's AdamW moments.
   */
  lora?: LoraConfig;
  /**
   * Preference losses: each pair's prompt runs once, both responses packed after it in one row
   * (trainer-batch.ts packPreferencePairs; inputs input_ids, position_ids, segment_ids, predict_from,
   * predict_target, predict_row instead of attention_mask and response_mask). Same loss and gradients
   * up to float rounding, with the prompt's forward and backward work done once instead of twice.
   */
  sharedPrompt?: boolean;
}

/** Whether a spec's grads graph takes packed pairs (packPreferencePairs' inputs) rather than masked rows. */
export function packsPairs(spec: Pick<TrainGraphSpec, 'loss' | 'sharedPrompt'>): boolean {
  return !!spec.sharedPrompt && spec.loss !== 'sft';
}

/** The parameters a spec trains, with their shapes: every weight, or the LoRA adapter's tensors. */
export function trainedShapes(spec: Pick<TrainGraphSpec, 'config' | 'lora'>): Map<string, number[]> {
  return spec.lora ? loraParameterShapes(spec.config, spec.lora) : llamaParameterShapes(spec.config);
}

export type TrainPhase = 'forward' | 'backward';
const phaseStarts = new WeakMap<GraphBuilder, Array<{ phase: TrainPhase; from: number }>>();
function markPhase(g: GraphBuilder, phase: TrainPhase): void {
  const marks = phaseStarts.get(g) ?? [{ phase: 'forward', from: 0 }];
  marks.push({ phase, from: g.nodes.length });
  phaseStarts.set(g, marks);
}

/**
 * Which phase each node of a grads graph belongs to, by node name (nodes are emitted forward, then
 * backward): for grouping onnxruntime profiles (bench/train-profile.ts).
 */
export function trainGraphPhases(g: GraphBuilder): Map<string, TrainPhase> {
  const marks = phaseStarts.get(g) ?? [{ phase: 'forward' as TrainPhase, from: 0 }];
  const out = new Map<string, TrainPhase>();
  g.nodes.forEach((n, i) => out.set(n.name, [...marks].reverse().find((m) => i >= m.from)!.phase));
  return out;
}

export const gradName = (p: string) => `grad.${p}`;
export const accName = (p: string) => `acc.${p}`;

/** Scalar/vector metric outputs of the grads graph. */
export const METRIC_OUTPUTS = ['loss', 'units', 'correct_sum', 'margin_sum', 'chosen_reward_sum', 'rejected_reward_sum', 'policy_logps'] as const;

function emitLossAndGrads(g: GraphBuilder, spec: TrainGraphSpec): Map<string, string> {
  const { config, dtype } = spec;
  const shapes = trainedShapes(spec);
  const params = new Map<string, string>();
  const packed = packsPairs(spec);
  const inputIds = g.input('input_ids', 'int64', ['rows', 'seq']);
  // preference losses read the reference log-probs of the 2P sequences, chosen first
  const refLogps = spec.loss === 'sft' ? undefined : g.input('ref_logps', dtype, ['sequences']);
  let rows: { attentionMask: string; predictAt: string } | { packed: NonNullable<TeacherForcedOptions['packed']> };
  let at: ResponsePositions;
  let responseMask: string | undefined;
  if (packed) {
    const predictFrom = g.input('predict_from', 'int64', ['predictions']);
    const predictRow = g.input('predict_row', 'int64', ['predictions']);
    const targets = g.input('predict_target', 'int64', ['predictions']);
    rows = { packed: { positionIds: g.input('position_ids', 'int64', ['rows', 'seq']), segmentIds: g.input('segment_ids', 'int64', ['rows', 'seq']), predictFrom, targets } };
    at = emitListedResponsePositions(g, predictFrom, predictRow, refLogps!);
  } else {
    const attentionMask = g.input('attention_mask', 'int64', ['rows', 'seq']);
    responseMask = g.input('response_mask', dtype, ['rows', 'seq_minus_1']);
    // the lm_head and log-softmax run on response positions only: prompt positions carry no loss
    at = emitResponsePositions(g, responseMask);
    rows = { attentionMask, predictAt: at.index };
  }
  const lossWeight = g.input('loss_weight', dtype, []);
  const trainable = (name: string, shape: number[]) => {
    const v = g.input(name, dtype, shape);
    params.set(name, v);
    return v;
  };
  const linear = spec.linear ?? 'gemm';
  const { logProbs } = emitLlamaForward(g, config, {
    dtype,
    inputIds,
    ...rows,
    // a packed row (prompt ++ chosen ++ rejected) is longer than either sequence, though its position
    // ids are not: onnxruntime's RotaryEmbedding wants a table row per position of the row all the same
    maxPositions: packed ? 2 * (spec.maxPositions ?? config.maxPositionEmbeddings) : spec.maxPositions,
    linear,
    contribOps: spec.contribOps ?? true,
    // with LoRA the weights are frozen inputs (outside `params`, so the autodiff never reaches them)
    weight: spec.lora ? (name, shape) => g.input(name, dtype, shape) : trainable,
    adapter: spec.lora ? loraLinearAdapter(g, config, spec.lora, { linear, dtype }, trainable) : undefined,
  });
  for (const name of shapes.keys()) if (!params.has(name)) params.set(name, g.input(name, dtype, shapes.get(name)!));
  const seqLogps = emitSequenceLogps(g, logProbs, at);
  g.output(seqLogps, dtype, ['sequences'], 'policy_logps');
  const sum = (v: string) => g.op1('ReduceSum', [v], { keepdims: 0 });

  let lossSum: string;
  if (spec.loss === 'sft') {
    const sft = emitSftLoss(g, logProbs, at, responseMask!);
    lossSum = sft.lossSum;
    g.output(sft.tokens, dtype, [], 'units');
    for (const name of ['correct_sum', 'margin_sum', 'chosen_reward_sum', 'rejected_reward_sum']) g.output(g.scalar(0, dtype), dtype, [], name);
  } else {
    const [policyChosen, policyRejected] = g.op('Split', [seqLogps], { axis: 0, num_outputs: 2 }, { outputs: 2 });
    const [refChosen, refRejected] = g.op('Split', [refLogps!], { axis: 0, num_outputs: 2 }, { outputs: 2 });
    let chosenLengths: string | undefined;
    let rejectedLengths: string | undefined;
    if (spec.loss === 'rdpo') {
      const lengths = g.input('lengths', dtype, ['sequences']);
      [chosenLengths, rejectedLengths] = g.op('Split', [lengths], { axis: 0, num_outputs: 2 }, { outputs: 2 });
    }
    const ktoReference = spec.loss === 'kto' ? g.input('kto_z0', dtype, []) : undefined;
    const out = emitPreferenceLoss(
      g,
      spec.loss,
      { policyChosen, policyRejected, refChosen, refRejected, chosenLengths, rejectedLengths, ktoReference },
      { beta: spec.beta, alpha: spec.alpha, dtype },
    );
    lossSum = out.lossSum;
    const pairs = g.op1('CastLike', [g.op1('Shape', [policyChosen]), lossWeight]);
    g.output(g.op1('Mul', [g.op1('ReduceSum', [pairs], { keepdims: 0 }), g.scalar(out.unitsPerPair, dtype)]), dtype, [], 'units');
    g.output(out.correctSum, dtype, [], 'correct_sum');
    g.output(out.marginSum, dtype, [], 'margin_sum');
    g.output(sum(out.chosenRewards), dtype, [], 'chosen_reward_sum');
    g.output(sum(out.rejectedRewards), dtype, [], 'rejected_reward_sum');
  }
  const loss = g.op1('Mul', [lossSum, lossWeight]);
  g.output(loss, dtype, [], 'loss');
  markPhase(g, 'backward');
  const { grads } = gradients(g, { loss, wrt: [...params.values()] });
  const byName = new Map<string, string>();
  for (const [name, v] of params) byName.set(name, grads.get(v)!);
  return byName;
}

/**
 * grads graph: metrics and grad.<name> for every parameter. With `accumulate`, it also takes
 * acc.<name> and outputs grad.<name> = acc.<name> + this micro-batch's gradient, so that the trainer
 * can bind input and output to one host buffer and sum micro-batches without a second one.
 */
export function buildGradsGraph(spec: TrainGraphSpec, opts: { accumulate?: boolean } = {}): GraphBuilder {
  const g = new GraphBuilder('train_grads');
  const grads = emitLossAndGrads(g, spec);
  const shapes = trainedShapes(spec);
  const outs: NamedOutput[] = [];
  for (const [name, grad] of grads) {
    const shape = shapes.get(name)!;
    const total = opts.accumulate ? g.op1('Add', [g.input(accName(name), spec.dtype, shape), grad]) : grad;
    outs.push({ value: total, name: gradName(name), dtype: spec.dtype, shape });
  }
  outputNamed(g, outs);
  return g;
}

interface NamedOutput {
  value: string;
  name: string;
  dtype: FloatDType;
  shape: number[];
}

/**
 * Declares graph outputs under new names by renaming the values where they are produced, rather than
 * through the builder's Identity: an Identity copies the tensor into the caller's preallocated output,
 * (~1 s per step at 135M parameters), where the producing node can write there directly.
 * A value that is a graph input, or already an output, gets the Identity.
 */
function outputNamed(g: GraphBuilder, outs: NamedOutput[]): void {
  const producer = new Map<string, GraphNode>();
  for (const n of g.nodes) for (const o of n.outputs) producer.set(o, n);
  const fixed = new Set([...g.inputs.map((i) => i.name), ...g.outputs.map((o) => o.name), ...g.initializers.keys()]);
  const renamed = new Map<string, string>();
  for (const o of outs) {
    const node = producer.get(o.value);
    if (!node || fixed.has(o.value) || renamed.has(o.value)) {
      g.output(renamed.get(o.value) ?? o.value, o.dtype, o.shape, o.name);
      continue;
    }
    node.outputs[node.outputs.indexOf(o.value)] = o.name;
    renamed.set(o.value, o.name);
    g.output(o.name, o.dtype, o.shape);
  }
  if (renamed.size === 0) return;
  for (const n of g.nodes) n.inputs = n.inputs.map((i) => renamed.get(i) ?? i);
}
