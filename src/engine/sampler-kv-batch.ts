import type { HostTensor } from '../model/tensor.ts';

/**
 * The KV cache of the rows being decoded together: per layer K and V [B, kvH, C, hd] (the layout the
 * decode graph takes) with room for C columns, of which the first L hold tokens, and the attention
 * mask [B, C]. Rows are right-aligned in [0, L): a row's tokens end at column L−1, earlier columns are
 * padding (mask 0); columns [L, C) are free (mask 0). The graph attends over all C columns (the mask
 * hides the free ones) and returns only the new token's K/V, which `append` writes into column L:
 * a decode step copies one column, not the whole cache.
 *
 * Rows join (after a prefill) and leave (when they finish) by `gatherRows`, which copies the chosen
 * rows into fresh arrays, dropping leading columns that are padding for every chosen row.
 */
export class KvBatch {
  constructor(
    readonly rows: number,
    /** Columns in use (L). */
    public length: number,
    /** Columns allocated (C ≥ L). */
    public capacity: number,
    /** [rows * capacity], 1 = attended */
    public mask: Uint8Array,
    public keys: Float32Array[],
    public values: Float32Array[],
    readonly kvHeads: number,
    readonly headDim: number,
  ) {}

  static empty(layers: number, kvHeads: number, headDim: number): KvBatch {
    const none = () => Array.from({ length: layers }, () => new Float32Array(0));
    return new KvBatch(0, 0, 0, new Uint8Array(0), none(), none(), kvHeads, headDim);
  }

  /** Writes one new attended column (the graph's new K/V [B, kvH, 1, hd] per layer) at column L; grows when full. */
  append(newKeys: Float32Array[], newValues: Float32Array[]): void {
    if (this.length === this.capacity) this.resize(Math.max(16, this.capacity * 2));
    const { rows, kvHeads, headDim: hd, capacity: C, length: L } = this;
    for (let l = 0; l < this.keys.length; l++) {
      const k = this.keys[l];
      const v = this.values[l];
      const nk = newKeys[l];
      const nv = newValues[l];
      // plain loops: 64-float copies are too short for subarray + set to pay off
      for (let rh = 0; rh < rows * kvHeads; rh++) {
        const from = rh * hd;
        const to = (rh * C + L) * hd;
        for (let d = 0; d < hd; d++) {
          k[to + d] = nk[from + d];
          v[to + d] = nv[from + d];
        }
      }
    }
    for (let r = 0; r < rows; r++) this.mask[r * C + L] = 1;
    this.length = L + 1;
  }

  /** Same rows and columns in buffers of `capacity` columns. */
  private resize(capacity: number): void {
    const grown = gatherRows([{ batch: this, rows: Array.from({ length: this.rows }, (_, r) => r) }], capacity - this.length, false);
    this.capacity = grown.capacity;
    this.mask = grown.mask;
    this.keys = grown.keys;
    this.values = grown.values;
  }

  /** First attended column of row r (length if none). */
  firstColumn(r: number): number {
    const row = this.mask.subarray(r * this.capacity, r * this.capacity + this.length);
    const i = row.indexOf(1);
    return i < 0 ? this.length : i;
  }

  /** Past tensors for the decode graph (all C columns), by input name. */
  pastFeeds(keyName: (i: number) => string, valueName: (i: number) => string): Record<string, HostTensor> {
    const shape = [this.rows, this.kvHeads, this.capacity, this.headDim];
    const feeds: Record<string, HostTensor> = {};
    this.keys.forEach((k, i) => {
      feeds[keyName(i)] = { dtype: 'float32', shape, data: k };
      feeds[valueName(i)] = { dtype: 'float32', shape, data: this.values[i] };
    });
    return feeds;
  }

  /** The attention mask over the C past columns + `extra` new attended columns, as int64 [B, C+extra]. */
  maskTensor(extra: number): HostTensor {
    const C = this.capacity;
    const W = C + extra;
    const data = new BigInt64Array(this.rows * W);
    for (let r = 0; r < this.rows; r++) {
      for (let c = 0; c < this.length; c++) if (this.mask[r * C + c]) data[r * W + c] = 1n;
      for (let c = C; c < W; c++) data[r * W + c] = 1n;
    }
    return { dtype: 'int64', shape: [this.rows, W], data };
  }
}

/**
 * A new batch made of rows picked from one or more batches (a row may be picked several times, e.g.
 * the K samples of one prefilled prompt), with room for `room` more columns. Columns that are
 * padding in every picked row of a source are dropped (unless `trim` is false); shorter sources are
 * left-padded so that all rows stay right-aligned.
 */
export function gatherRows(parts: Array<{ batch: KvBatch; rows: number[] }>, room = 0, trim = true): KvBatch {
  const used = parts.filter((p) => p.rows.length > 0);
  if (used.length === 0) return KvBatch.empty(parts[0].batch.keys.length, parts[0].batch.kvHeads, parts[0].batch.headDim);
  const { kvHeads, headDim } = used[0].batch;
  const layers = used[0].batch.keys.length;
  const starts = used.map((p) => (trim ? Math.min(...p.rows.map((r) => p.batch.firstColumn(r))) : 0));
  const L = Math.max(...used.map((p, i) => p.batch.length - starts[i]));
  const C = L + room;
  const B = used.reduce((n, p) => n + p.rows.length, 0);
  const mask = new Uint8Array(B * C);
  const keys = Array.from({ length: layers }, () => new Float32Array(B * kvHeads * C * headDim));
  const values = Array.from({ length: layers }, () => new Float32Array(B * kvHeads * C * headDim));
  let out = 0;
  used.forEach((p, pi) => {
    const src = p.batch;
    const start = starts[pi];
    const width = src.length - start;
    const pad = L - width;
    for (const r of p.rows) {
      mask.set(src.mask.subarray(r * src.capacity + start, r * src.capacity + src.length), out * C + pad);
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < kvHeads; h++) {
          const from = ((r * kvHeads + h) * src.capacity + start) * headDim;
          const to = ((out * kvHeads + h) * C + pad) * headDim;
          keys[l].set(src.keys[l].subarray(from, from + width * headDim), to);
          values[l].set(src.values[l].subarray(from, from + width * headDim), to);
        }
      }
      out++;
    }
  });
  return new KvBatch(B, L, C, mask, keys, values, kvHeads, headDim);
}
