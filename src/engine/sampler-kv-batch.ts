import type { HostTensor } from '../model/tensor.ts';

/**
 * The KV cache of the rows being decoded together: per layer K and V [B, kvH, L, hd] (the layout the
 * decode graph takes and returns) and the attention mask [B, L]. Rows are right-aligned: a row's
 * tokens end at column L−1, earlier columns are padding (mask 0).
 *
 * Rows join (after a prefill) and leave (when they finish) by `gather`, which copies the chosen rows
 * into fresh arrays, dropping leading columns that are padding for every chosen row.
 */
export class KvBatch {
  constructor(
    readonly rows: number,
    readonly length: number,
    /** [rows * length], 1 = attended */
    readonly mask: Uint8Array,
    readonly keys: Float32Array[],
    readonly values: Float32Array[],
    readonly kvHeads: number,
    readonly headDim: number,
  ) {}

  static empty(layers: number, kvHeads: number, headDim: number): KvBatch {
    const none = () => Array.from({ length: layers }, () => new Float32Array(0));
    return new KvBatch(0, 0, new Uint8Array(0), none(), none(), kvHeads, headDim);
  }

  /** Same rows after one decode step: the graph's present K/V and the mask with one more attended column. */
  advance(presentKeys: Float32Array[], presentValues: Float32Array[]): KvBatch {
    const L = this.length + 1;
    const mask = new Uint8Array(this.rows * L);
    for (let r = 0; r < this.rows; r++) {
      mask.set(this.mask.subarray(r * this.length, (r + 1) * this.length), r * L);
      mask[r * L + L - 1] = 1;
    }
    return new KvBatch(this.rows, L, mask, presentKeys, presentValues, this.kvHeads, this.headDim);
  }

  /** First attended column of row r (length if none). */
  firstColumn(r: number): number {
    const row = this.mask.subarray(r * this.length, (r + 1) * this.length);
    const i = row.indexOf(1);
    return i < 0 ? this.length : i;
  }

  /** Past tensors for the decode graph, by input name. */
  pastFeeds(keyName: (i: number) => string, valueName: (i: number) => string): Record<string, HostTensor> {
    const shape = [this.rows, this.kvHeads, this.length, this.headDim];
    const feeds: Record<string, HostTensor> = {};
    this.keys.forEach((k, i) => {
      feeds[keyName(i)] = { dtype: 'float32', shape, data: k };
      feeds[valueName(i)] = { dtype: 'float32', shape, data: this.values[i] };
    });
    return feeds;
  }

  /** The attention mask over past + `extra` new attended columns, as int64 [B, L+extra]. */
  maskTensor(extra: number): HostTensor {
    const L = this.length + extra;
    const data = new BigInt64Array(this.rows * L);
    for (let r = 0; r < this.rows; r++) {
      for (let c = 0; c < this.length; c++) if (this.mask[r * this.length + c]) data[r * L + c] = 1n;
      for (let c = this.length; c < L; c++) data[r * L + c] = 1n;
    }
    return { dtype: 'int64', shape: [this.rows, L], data };
  }
}

/**
 * A new batch made of rows picked from one or more batches (a row may be picked several times, e.g.
 * the K samples of one prefilled prompt). Columns that are padding in every picked row of a source
 * are dropped; shorter sources are left-padded so that all rows stay right-aligned.
 */
export function gatherRows(parts: Array<{ batch: KvBatch; rows: number[] }>): KvBatch {
  const used = parts.filter((p) => p.rows.length > 0);
  if (used.length === 0) return KvBatch.empty(parts[0].batch.keys.length, parts[0].batch.kvHeads, parts[0].batch.headDim);
  const { kvHeads, headDim } = used[0].batch;
  const layers = used[0].batch.keys.length;
  const starts = used.map((p) => Math.min(...p.rows.map((r) => p.batch.firstColumn(r))));
  const L = Math.max(...used.map((p, i) => p.batch.length - starts[i]));
  const B = used.reduce((n, p) => n + p.rows.length, 0);
  const mask = new Uint8Array(B * L);
  const keys = Array.from({ length: layers }, () => new Float32Array(B * kvHeads * L * headDim));
  const values = Array.from({ length: layers }, () => new Float32Array(B * kvHeads * L * headDim));
  let out = 0;
  used.forEach((p, pi) => {
    const src = p.batch;
    const start = starts[pi];
    const width = src.length - start;
    const pad = L - width;
    for (const r of p.rows) {
      mask.set(src.mask.subarray(r * src.length + start, (r + 1) * src.length), out * L + pad);
      for (let l = 0; l < layers; l++) {
        for (let h = 0; h < kvHeads; h++) {
          const from = ((r * kvHeads + h) * src.length + start) * headDim;
          const to = ((out * kvHeads + h) * L + pad) * headDim;
          keys[l].set(src.keys[l].subarray(from, from + width * headDim), to);
          values[l].set(src.values[l].subarray(from, from + width * headDim), to);
        }
      }
      out++;
    }
  });
  return new KvBatch(B, L, mask, keys, values, kvHeads, headDim);
}
