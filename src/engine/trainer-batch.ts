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
