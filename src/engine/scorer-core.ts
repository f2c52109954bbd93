import type { InferenceSession } from 'onnxruntime-node';
import { buildTeacherForcedGraph } from '../model/llama-graph.ts';
import type { LlamaConfig } from '../model/llama-config.ts';
import type { Weights } from '../model/tensor.ts';
import { createSession, runSession, type SessionConfig } from '../onnx/session.ts';
import { engineModel } from './engine-weights.ts';

/**
 * Teacher-forced sequence log-probs of responses given prompts, in the calling thread (the worker in
 * scorer-worker.ts hosts it): log π(response | prompt) = Σ over response tokens of log p(token | prefix);
 * prompt tokens are context only. Items are sorted by length and cut into right-padded batches of at
 * most `maxBatchTokens` padded tokens, so little compute goes to padding. The lm_head and log-softmax
 * (a fifth of a 135M model's work per position) run at response positions only.
 */

export interface ScoreItem {
  promptTokenIds: number[];
  responseTokenIds: number[];
}

export interface ScoreResult {
  /** Σ log p over response tokens (0 for an empty response). */
  logProb: number;
  /** Per response token. */
  tokenLogProbs: number[];
}

export interface ScoreParams {
  /** Padded tokens per batch (B × longest sequence), default 4096; a longer single item runs alone. */
  maxBatchTokens?: number;
}

export class ScorerCore {
  private constructor(
    readonly config: LlamaConfig,
    private readonly session: InferenceSession,
  ) {}

  /** `releaseWeights`, `weightsDir`: see SamplerCore.create. */
  static async create(config: LlamaConfig, weights: Weights, session: SessionConfig = {}, releaseWeights = false, weightsDir?: string): Promise<ScorerCore> {
    const model = await engineModel(() => buildTeacherForcedGraph(config, weights, { predictAt: true }), weights, { weightsDir, releaseWeights });
    return new ScorerCore(config, await createSession(model.bytes, { ...session, configEntries: { ...model.configEntries, ...session.configEntries } }));
  }

  async score(items: ScoreItem[], params: ScoreParams = {}): Promise<ScoreResult[]> {
    items.forEach((it, i) => this.check(it, i));
    const budget = params.maxBatchTokens ?? 4096;
    const lengths = items.map((it) => it.promptTokenIds.length + it.responseTokenIds.length);
    const order = items.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
    const results: ScoreResult[] = new Array(items.length);
    for (let start = 0; start < order.length; ) {
      const T = lengths[order[start]];
      let end = start + 1;
      while (end < order.length && (end - start + 1) * T <= budget) end++;
      const batch = order.slice(start, end);
      const lp = await this.forward(batch.map((i) => items[i]), T);
      let at = 0; // lp holds the response tokens' log-probs, item after item (see forward)
      for (const item of batch) {
        const tokenLogProbs = Array.from(lp.subarray(at, at + items[item].responseTokenIds.length));
        at += tokenLogProbs.length;
        results[item] = { logProb: tokenLogProbs.reduce((a, x) => a + x, 0), tokenLogProbs };
      }
      start = end;
    }
    return results;
  }

  private check(it: ScoreItem, i: number): void {
    if (it.promptTokenIds.length === 0) throw new Error(`score item ${i}: the prompt has no tokens (the first response token needs context; start with BOS)`);
    const n = it.promptTokenIds.length + it.responseTokenIds.length;
    if (n > this.config.maxPositionEmbeddings) throw new Error(`score item ${i}: ${n} tokens exceed the model's ${this.config.maxPositionEmbeddings} positions`);
    for (const t of [...it.promptTokenIds, ...it.responseTokenIds]) {
      if (!Number.isInteger(t) || t < 0 || t >= this.config.vocabSize) throw new Error(`score item ${i}: token id ${t} is outside the vocabulary [0, ${this.config.vocabSize})`);
    }
  }

  /** Log-probs of the items' response tokens, item after item (prompt positions are not scored). */
  private async forward(items: ScoreItem[], T: number): Promise<Float32Array> {
    const B = items.length;
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    const predictAt: bigint[] = [];
    items.forEach((it, b) => {
      [...it.promptTokenIds, ...it.responseTokenIds].forEach((t, j) => {
        ids[b * T + j] = BigInt(t);
        mask[b * T + j] = 1n;
      });
      // response token j is predicted at position |p| + j − 1 of the B × (T−1) predicting positions
      for (let j = 0; j < it.responseTokenIds.length; j++) predictAt.push(BigInt(b * (T - 1) + it.promptTokenIds.length + j - 1));
    });
    if (predictAt.length === 0) return new Float32Array(0);
    const out = await runSession(this.session, {
      input_ids: { dtype: 'int64', shape: [B, T], data: ids },
      attention_mask: { dtype: 'int64', shape: [B, T], data: mask },
      predict_at: { dtype: 'int64', shape: [predictAt.length], data: BigInt64Array.from(predictAt) },
    }, ['log_probs']);
    return out.log_probs.data as Float32Array;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
