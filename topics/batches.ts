import { enumeration, float64, int32, listOf, struct, tokens, utf8 } from './codec.ts';
import { schemaOf } from './common.ts';
import { arrowContract } from './contract.ts';
import { pairSources, type PairSource } from './pairs.ts';

/** One training example after replay mixing, with the reference log-probs the DPO loss needs. */
export interface BatchRow {
  pairId: string;
  source: PairSource;
  promptTokenIds: Int32Array;
  chosenTokenIds: Int32Array;
  rejectedTokenIds: Int32Array;
  /** log π_ref(y_w|x) and log π_ref(y_l|x) with π_ref = π_θ(t−1), summed over response tokens. */
  chosenRefLogp: number;
  rejectedRefLogp: number;
}

/** A training batch. Key: `${round}/${step}` (batchKey). */
export interface TrainingBatch {
  round: number;
  step: number;
  runId: string;
  rows: BatchRow[];
}

export const batchKey = (b: { round: number; step: number }) => `${b.round}/${b.step}`;

export const batchesSchema = schemaOf([
  int32('round'),
  int32('step'),
  utf8('runId'),
  listOf('rows', struct([
      utf8('pairId'),
      enumeration('source', pairSources),
      tokens('promptTokenIds'),
      tokens('chosenTokenIds'),
      tokens('rejectedTokenIds'),
      float64('chosenRefLogp'),
      float64('rejectedRefLogp'),
  ])),
]);

export const batchesTopic = arrowContract<TrainingBatch>({
  name: 'batches',
  schema: batchesSchema,
  defaultPartitions: 1,
  keyOf: batchKey,
  check(b, fail) {
    if (b.step < 0) fail('step', `must be ≥ 0, got ${b.step}`);
    if (b.rows.length === 0) fail('rows', 'a batch needs at least one row');
    b.rows.forEach((r, i) => {
      if (r.chosenTokenIds.length === 0) fail(`rows[${i}].chosenTokenIds`, 'must not be empty');
      if (r.rejectedTokenIds.length === 0) fail(`rows[${i}].rejectedTokenIds`, 'must not be empty');
    });
  },
});
