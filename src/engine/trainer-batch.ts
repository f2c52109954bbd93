import type { HostTensor } from '../model/tensor.ts';

/**
 * Training examples as token ids, and their collation into the train graphs' inputs.
 * Rows are right-padded; position t of response_mask is 1 when it predicts a response token
 * (so a response of n tokens after a prompt of p tokens marks positions p−1 … p+n−2).
 */
export interface PreferencePair {
  promptTokenIds: number[];
  /** Response token ids (EOS included when the response ended with one). */
  chosenTokenIds: number[];
  rejectedTokenIds: number[];
  /** Reference-model summed log-probs of the two responses. */
  refChosenLogp: number;
  refRejectedLogp: number;
  /** Lengths for rdpo (default: token counts). */
  chosenLength?: number;
  rejectedLength?: number;
}

export interface SftExample {
  promptTokenIds: number[];
  completionTokenIds: number[];
}

export interface Row {
  prompt: number[];
  response: number[];
}

export interface CollatedRows {
  input_ids: HostTensor;
  attention_mask: HostTensor;
  response_mask: HostTensor;
  /** Response tokens in the rows. */
  responseTokens: number;
}

export function collateRows(rows: Row[], dtype: 'float32' | 'float64', padId = 0, what = 'batch'): CollatedRows {
  if (rows.length === 0) throw new Error(`${what}: no rows`);
  rows.forEach((r, i) => {
    if (r.prompt.length === 0) throw new Error(`${what}: row ${i} has an empty prompt (at least one token, e.g. BOS, must precede the response)`);
    if (r.response.length === 0) throw new Error(`${what}: row ${i} has an empty response`);
  });
  const T = Math.max(...rows.map((r) => r.prompt.length + r.response.length));
  const N = rows.length;
  const ids = new BigInt64Array(N * T).fill(BigInt(padId));
  const mask = new BigInt64Array(N * T);
  const resp = dtype === 'float64' ? new Float64Array(N * (T - 1)) : new Float32Array(N * (T - 1));
  let responseTokens = 0;
  rows.forEach((r, i) => {
    const seq = [...r.prompt, ...r.response];
    seq.forEach((id, t) => {
      ids[i * T + t] = BigInt(id);
      mask[i * T + t] = 1n;
    });
    for (let k = 0; k < r.response.length; k++) resp[i * (T - 1) + r.prompt.length - 1 + k] = 1;
    responseTokens += r.response.length;
  });
  return {
    input_ids: { dtype: 'int64', shape: [N, T], data: ids },
    attention_mask: { dtype: 'int64', shape: [N, T], data: mask },
    response_mask: { dtype, shape: [N, T - 1], data: resp },
    responseTokens,
  };
}

/**
 * Preference pairs packed one per row, the prompt shared: prompt ++ chosen ++ rejected, right-padded.
 * The rejected tokens take the positions the chosen ones have (RoPE sees each response right after the
 * prompt) and the graph's attention keeps the two responses apart (segment_ids: 1 prompt, 2 chosen,
 * 3 rejected, 0 padding; a token attends earlier tokens of the prompt and of its own segment). Each
 * response token is predicted from the position before it in its own sequence — the first one of
 * either response from the prompt's last — so the log-probs and gradients are those of preferenceRows
 * (up to float rounding) with the prompt's work done once.
 *
 *   predict_from   int64 [R] flat index into the N×T positions
 *   predict_target int64 [R] the token predicted there
 *   predict_row    int64 [R] its row in preferenceRows' layout (chosen i → i, rejected i → P + i)
 */
export interface PackedPairs {
  input_ids: HostTensor;
  position_ids: HostTensor;
  segment_ids: HostTensor;
  predict_from: HostTensor;
  predict_target: HostTensor;
  predict_row: HostTensor;
  responseTokens: number;
}

// the graph's segmentBias reads 0 as padding and 1 as the shared prefix
const SEGMENT = { padding: 0, prompt: 1, chosen: 2, rejected: 3 } as const;

export function packPreferencePairs(pairs: PreferencePair[], padId = 0, what = 'batch'): PackedPairs {
  if (pairs.length === 0) throw new Error(`${what}: no pairs`);
  pairs.forEach((p, i) => {
    if (p.promptTokenIds.length === 0) throw new Error(`${what}: pair ${i} has an empty prompt (at least one token, e.g. BOS, must precede the response)`);
    if (p.chosenTokenIds.length === 0 || p.rejectedTokenIds.length === 0) throw new Error(`${what}: pair ${i} has an empty response`);
  });
  const P = pairs.length;
  const T = Math.max(...pairs.map((p) => p.promptTokenIds.length + p.chosenTokenIds.length + p.rejectedTokenIds.length));
  const ids = new BigInt64Array(P * T).fill(BigInt(padId));
  const positions = new BigInt64Array(P * T);
  const segments = new BigInt64Array(P * T);
  const from: bigint[] = [];
  const target: bigint[] = [];
  const row: bigint[] = [];
  pairs.forEach((p, i) => {
    const n = p.promptTokenIds.length;
    const put = (tokens: number[], at: number, firstPosition: number, segment: number) => {
      tokens.forEach((id, j) => {
        ids[i * T + at + j] = BigInt(id);
        positions[i * T + at + j] = BigInt(firstPosition + j);
        segments[i * T + at + j] = BigInt(segment);
      });
    };
    put(p.promptTokenIds, 0, 0, SEGMENT.prompt);
    put(p.chosenTokenIds, n, n, SEGMENT.chosen);
    const rejectedAt = n + p.chosenTokenIds.length;
    put(p.rejectedTokenIds, rejectedAt, n, SEGMENT.rejected);
    const predict = (tokens: number[], at: number, logicalRow: number) => {
      tokens.forEach((id, j) => {
        from.push(BigInt(i * T + (j === 0 ? n - 1 : at + j - 1)));
        target.push(BigInt(id));
        row.push(BigInt(logicalRow));
      });
    };
    predict(p.chosenTokenIds, n, i);
    predict(p.rejectedTokenIds, rejectedAt, P + i);
  });
  const vec = (xs: bigint[]): HostTensor => ({ dtype: 'int64', shape: [xs.length], data: BigInt64Array.from(xs) });
  return {
    input_ids: { dtype: 'int64', shape: [P, T], data: ids },
    position_ids: { dtype: 'int64', shape: [P, T], data: positions },
    segment_ids: { dtype: 'int64', shape: [P, T], data: segments },
    predict_from: vec(from),
    predict_target: vec(target),
    predict_row: vec(row),
    responseTokens: from.length,
  };
}

/** Chosen rows first, then rejected rows — the layout the preference losses split in half. */
export function preferenceRows(pairs: PreferencePair[]): Row[] {
  return [
    ...pairs.map((p) => ({ prompt: p.promptTokenIds, response: p.chosenTokenIds })),
    ...pairs.map((p) => ({ prompt: p.promptTokenIds, response: p.rejectedTokenIds })),
  ];
}

/**
 * KTO's reference point as TRL computes it: mismatched pairs (prompt i with the chosen response of
 * pair i+1 mod P), whose policy − reference log-ratio averaged and clamped at 0 is z₀ (no gradient).
 */
export function ktoMismatchedRows(pairs: PreferencePair[]): Row[] {
  return pairs.map((p, i) => ({ prompt: p.promptTokenIds, response: pairs[(i + 1) % pairs.length].chosenTokenIds }));
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
