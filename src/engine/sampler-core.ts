import type { InferenceSession } from 'onnxruntime-node';
import { buildDecodeStepGraph, newKeyName, newValueName, pastKeyName, pastValueName } from '../model/llama-graph.ts';
import type { LlamaConfig } from '../model/llama-config.ts';
import type { Weights } from '../model/tensor.ts';
import { createSession, runSession, type SessionConfig } from '../onnx/session.ts';
import { deriveSeed, Rng } from '../util/random.ts';
import { engineModel } from './engine-weights.ts';
import { gatherRows, KvBatch } from './sampler-kv-batch.ts';
import { checkSamplingParams, sampleWithLogProb, type SamplingParams } from './sampling.ts';

/**
 * Batched generation with a KV cache, in the calling thread (the worker in sampler-worker.ts hosts it).
 *
 * Prompts are prefilled together (left-padded), each prompt once; its cache rows are then copied K
 * times, one per sample. Rows decode together one token per step; finished rows leave the batch
 * (their cache rows are dropped) and queued prompts join when there is room, up to `maxBatchRows`.
 * Each sample draws from its own Rng seeded by deriveSeed(seed, promptId, k), so the samples do not
 * depend on how requests are batched (up to float rounding of batched matmuls, which could only
 * flip a draw that lands within ~1e-7 of a boundary).
 */

export interface GenerateRequest {
  promptId: string;
  promptTokenIds: number[];
  /** Number of samples. */
  k: number;
  /** Run seed; fold a policy version in with deriveSeed(runSeed, version) if samples must differ per version. */
  seed: number;
}

export interface GenerateParams extends SamplingParams {
  maxNewTokens: number;
  /** Generation stops on any of these; default: the model's eos ids. */
  eosTokenIds?: number[];
  /** Rows decoded together at most (default 64). */
  maxBatchRows?: number;
}

export type FinishReason = 'eos' | 'length';

export interface GeneratedSample {
  k: number;
  /** The seed of this sample's Rng. */
  seed: number;
  /** Response tokens, the EOS token included when it ended the response. */
  tokenIds: number[];
  finishReason: FinishReason;
  /** Untempered log-prob of the response under the model, summed over tokenIds. */
  logProb: number;
}

export interface GenerateResult {
  promptId: string;
  samples: GeneratedSample[];
  /** Set (and samples empty) when the request could not be served, e.g. a prompt too long. */
  error?: string;
}

export const DEFAULT_SAMPLING: GenerateParams = { temperature: 1, topP: 1, topK: 0, maxNewTokens: 128 };

interface Row {
  request: number;
  k: number;
  rng: Rng;
  seed: number;
  tokens: number[];
  logProb: number;
  /** Position of the next token fed to the model. */
  nextPosition: number;
}

/** Where the time of the last generate() went (ms): onnxruntime runs, host-side sampling, cache moves. */
export interface GenerateStats {
  steps: number;
  runMs: number;
  sampleMs: number;
  cacheMs: number;
}

export class SamplerCore {
  stats: GenerateStats = { steps: 0, runMs: 0, sampleMs: 0, cacheMs: 0 };

  private constructor(
    readonly config: LlamaConfig,
    private readonly session: InferenceSession,
  ) {}

  /**
   * `releaseWeights`: empty the weights map once the graph is serialized, so its memory goes before
   * onnxruntime loads its copy. `weightsDir`: the model directory the weights were read from
   * (unchanged); onnxruntime then reads the float32 tensors from its safetensors files itself.
   */
  static async create(config: LlamaConfig, weights: Weights, session: SessionConfig = {}, releaseWeights = false, weightsDir?: string): Promise<SamplerCore> {
    const model = await engineModel(() => buildDecodeStepGraph(config, weights, { cache: 'append' }), weights, { weightsDir, releaseWeights });
    return new SamplerCore(config, await createSession(model.bytes, { ...session, configEntries: { ...model.configEntries, ...session.configEntries } }));
  }

  async generate(requests: GenerateRequest[], params: GenerateParams): Promise<GenerateResult[]> {
    checkSamplingParams(params);
    if (!Number.isInteger(params.maxNewTokens) || params.maxNewTokens < 1) throw new Error(`generate: max new tokens must be an integer ≥ 1, got ${params.maxNewTokens}`);
    const maxRows = params.maxBatchRows ?? 64;
    const eos = new Set(params.eosTokenIds ?? this.config.eosTokenIds);
    const results: GenerateResult[] = requests.map((r) => ({ promptId: r.promptId, samples: [] }));
    const stats: GenerateStats = (this.stats = { steps: 0, runMs: 0, sampleMs: 0, cacheMs: 0 });
    const timed = async <T>(key: 'runMs' | 'sampleMs' | 'cacheMs', fn: () => T | Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const out = await fn();
      stats[key] += performance.now() - t0;
      return out;
    };
    const queue: number[] = [];
    requests.forEach((r, i) => {
      const error = this.checkRequest(r, params.maxNewTokens);
      if (error) results[i].error = error;
      else if (r.k > 0) queue.push(i);
    });

    let batch = KvBatch.empty(this.config.numLayers, this.config.numKvHeads, this.config.headDim);
    let rows: Row[] = [];
    /** Cache columns the rows may still append: one per token still to come, at most. */
    const room = (rs: Row[]) => Math.max(0, ...rs.map((r) => params.maxNewTokens - r.tokens.length));
    const finish = (row: Row, reason: FinishReason) => {
      results[row.request].samples.push({ k: row.k, seed: row.seed, tokenIds: row.tokens, finishReason: reason, logProb: row.logProb });
    };
    /** Samples each row's next token from its logits; returns the indices of rows still running. */
    const step = (rowsNow: Row[], logits: Float32Array, logitRow: (i: number) => number): number[] => {
      const V = this.config.vocabSize;
      const alive: number[] = [];
      rowsNow.forEach((row, i) => {
        const lr = logits.subarray(logitRow(i) * V, (logitRow(i) + 1) * V);
        const { token, logProb } = sampleWithLogProb(lr, params, row.rng);
        row.logProb += logProb;
        row.tokens.push(token);
        if (eos.has(token)) finish(row, 'eos');
        else if (row.tokens.length >= params.maxNewTokens) finish(row, 'length');
        else alive.push(i);
      });
      return alive;
    };

    while (queue.length > 0 || rows.length > 0) {
      // Admit queued prompts while their samples fit.
      const admitted: number[] = [];
      let free = maxRows - rows.length;
      while (queue.length > 0 && (requests[queue[0]].k <= free || (rows.length === 0 && admitted.length === 0))) {
        free -= requests[queue[0]].k;
        admitted.push(queue.shift()!);
      }
      if (admitted.length > 0) {
        const { prefilled, logits } = await timed('runMs', () => this.prefill(admitted.map((i) => requests[i].promptTokenIds)));
        const newRows: Row[] = [];
        const sourceRow: number[] = [];
        admitted.forEach((ri, p) => {
          const r = requests[ri];
          for (let k = 0; k < r.k; k++) {
            const seed = deriveSeed(r.seed, r.promptId, k);
            newRows.push({ request: ri, k, rng: new Rng(seed), seed, tokens: [], logProb: 0, nextPosition: r.promptTokenIds.length });
            sourceRow.push(p);
          }
        });
        const alive = await timed('sampleMs', () => step(newRows, logits, (i) => sourceRow[i]));
        const joined = [...rows, ...alive.map((i) => newRows[i])];
        batch = await timed('cacheMs', () => gatherRows([
          { batch, rows: rows.map((_, i) => i) },
          { batch: prefilled, rows: alive.map((i) => sourceRow[i]) },
        ], room(joined)));
        rows = joined;
      }
      if (rows.length === 0) continue;

      const out = await timed('runMs', () => this.decode(batch, rows));
      stats.steps++;
      await timed('cacheMs', () => batch.append(out.keys, out.values));
      const alive = await timed('sampleMs', () => step(rows, out.logits, (i) => i));
      for (const row of rows) row.nextPosition++;
      if (alive.length < rows.length) {
        const left = alive.map((i) => rows[i]);
        batch = await timed('cacheMs', () => gatherRows([{ batch, rows: alive }], room(left)));
        rows = left;
      }
    }
    for (const r of results) r.samples.sort((a, b) => a.k - b.k);
    return results;
  }

  private checkRequest(r: GenerateRequest, maxNewTokens: number): string | undefined {
    const n = r.promptTokenIds.length;
    if (!Number.isInteger(r.k) || r.k < 0) return `prompt ${r.promptId}: k must be an integer ≥ 0, got ${r.k}`;
    if (n === 0) return `prompt ${r.promptId}: the prompt has no tokens`;
    const limit = this.config.maxPositionEmbeddings - maxNewTokens;
    if (n > limit) {
      return `prompt ${r.promptId}: ${n} prompt tokens + ${maxNewTokens} new tokens exceed the model's ${this.config.maxPositionEmbeddings} positions (at most ${limit} prompt tokens)`;
    }
    const bad = r.promptTokenIds.find((t) => !Number.isInteger(t) || t < 0 || t >= this.config.vocabSize);
    if (bad !== undefined) return `prompt ${r.promptId}: token id ${bad} is outside the vocabulary [0, ${this.config.vocabSize})`;
    return undefined;
  }

  /** Runs the prompts (left-padded) through the graph with an empty cache: last-position logits and their cache. */
  private async prefill(prompts: number[][]): Promise<{ prefilled: KvBatch; logits: Float32Array }> {
    const B = prompts.length;
    const T = Math.max(...prompts.map((p) => p.length));
    const ids = new BigInt64Array(B * T);
    const positions = new BigInt64Array(B * T);
    const mask = new Uint8Array(B * T);
    prompts.forEach((p, b) => {
      const pad = T - p.length;
      p.forEach((t, j) => {
        ids[b * T + pad + j] = BigInt(t);
        positions[b * T + pad + j] = BigInt(j);
        mask[b * T + pad + j] = 1;
      });
    });
    const empty = KvBatch.empty(this.config.numLayers, this.config.numKvHeads, this.config.headDim);
    const past = new KvBatch(B, 0, 0, new Uint8Array(0), empty.keys, empty.values, empty.kvHeads, empty.headDim);
    const maskData = BigInt64Array.from(mask, (m) => BigInt(m));
    const out = await runSession(this.session, {
      input_ids: { dtype: 'int64', shape: [B, T], data: ids },
      position_ids: { dtype: 'int64', shape: [B, T], data: positions },
      attention_mask: { dtype: 'int64', shape: [B, T], data: maskData },
      ...past.pastFeeds(pastKeyName, pastValueName),
    });
    const keys = Array.from({ length: this.config.numLayers }, (_, i) => out[newKeyName(i)].data as Float32Array);
    const values = Array.from({ length: this.config.numLayers }, (_, i) => out[newValueName(i)].data as Float32Array);
    return { prefilled: new KvBatch(B, T, T, mask, keys, values, empty.kvHeads, empty.headDim), logits: out.logits.data as Float32Array };
  }

  /** One token per row: feeds each row's last token at its position; returns the logits and the token's K/V per layer. */
  private async decode(batch: KvBatch, rows: Row[]): Promise<{ keys: Float32Array[]; values: Float32Array[]; logits: Float32Array }> {
    const B = rows.length;
    const out = await runSession(this.session, {
      input_ids: { dtype: 'int64', shape: [B, 1], data: BigInt64Array.from(rows, (r) => BigInt(r.tokens[r.tokens.length - 1])) },
      position_ids: { dtype: 'int64', shape: [B, 1], data: BigInt64Array.from(rows, (r) => BigInt(r.nextPosition)) },
      attention_mask: batch.maskTensor(1),
      ...batch.pastFeeds(pastKeyName, pastValueName),
    });
    const keys = Array.from({ length: this.config.numLayers }, (_, i) => out[newKeyName(i)].data as Float32Array);
    const values = Array.from({ length: this.config.numLayers }, (_, i) => out[newValueName(i)].data as Float32Array);
    return { keys, values, logits: out.logits.data as Float32Array };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
