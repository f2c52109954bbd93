/**
 * The one batcher. DICE's rounds cut their replay-mixed pairs with `cutBatches` (src/dice/replay.ts);
 * the bootstrap stages and `dice train` draw from a dataset with `datasetBatcher`. Both are an
 * `EpochBatcher`, differing only in how an epoch is permuted.
 */
import { Rng } from './random.ts';

/**
 * A stream of epochs, each a permutation of the items given by `permute(epoch)`, cut into consecutive
 * batches of `batchSize`. A batch may span an epoch boundary, so with fewer items than `batchSize` a
 * batch can hold an item twice.
 */
export class EpochBatcher<T> {
  /** Epochs begun. */
  epochs = 0;
  private order: T[] = [];
  private taken = 0;

  constructor(
    private readonly permute: (epoch: number) => T[],
    private readonly batchSize: number,
  ) {
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new Error(`batcher: batchSize must be a positive integer, got ${batchSize}`);
  }

  next(): T[] {
    const batch: T[] = [];
    while (batch.length < this.batchSize) {
      if (this.taken === this.order.length) {
        this.order = this.permute(this.epochs++);
        this.taken = 0;
        if (this.order.length === 0) throw new Error('batcher: an epoch has no items');
      }
      batch.push(this.order[this.taken++]);
    }
    return batch;
  }

  /** Items of the current epoch not taken yet. */
  get remaining(): number {
    return this.order.length - this.taken;
  }
}

/**
 * Indices into a dataset of n items for offline training: each batch the next min(batch, n) of a
 * stream of seeded shuffles (one generator across epochs, each shuffle read from its end).
 */
export function datasetBatcher(n: number, batch: number, seed: number): EpochBatcher<number> {
  const rng = new Rng(seed);
  return new EpochBatcher(() => rng.shuffle([...Array(n).keys()]).reverse(), Math.min(batch, n));
}
