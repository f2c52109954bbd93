import type { GraphBuilder } from '../onnx/builder.ts';

/**
 * The positions the losses read: where response_mask [N,T−1] is non-zero (the positions that predict
 * a response token), found in the graph so that the batch inputs stay as they are.
 *
 *   index     int64 [R]  flat index into the N×(T−1) predicting positions (row-major)
 *   weight    [R]        the mask's value there (1 for a 0/1 mask)
 *   rowWeight [N,R]      weight[r] in row row(r), 0 elsewhere: rowWeight · tokenLogps sums each row
 */
export interface ResponsePositions {
  index: string;
  weight: string;
  rowWeight: string;
}

export function emitResponsePositions(g: GraphBuilder, responseMask: string): ResponsePositions {
  const nz = g.op1('NonZero', [g.op1('Cast', [responseMask], { to: 9 /* BOOL */ })]); // [2,R]: row, column
  const [row, col] = g.op('Split', [nz, g.int64([1, 1])], { axis: 0 }, { outputs: 2 }).map((v) => g.op1('Reshape', [v, g.int64([-1])]));
  const width = g.op1('Shape', [responseMask], { start: 1, end: 2 });
  const index = g.op1('Add', [g.op1('Mul', [row, width]), col]);
  const weight = g.op1('Gather', [g.op1('Reshape', [responseMask, g.int64([-1])]), index], { axis: 0 });
  const rows = g.op1('Range', [g.int64([0], []), g.op1('Reshape', [g.op1('Shape', [responseMask], { start: 0, end: 1 }), g.int64([], [0])]), g.int64([1], [])]);
  const inRow = g.op1('Equal', [g.op1('Unsqueeze', [rows, g.int64([1])]), g.op1('Unsqueeze', [row, g.int64([0])])]); // [N,R]
  const rowWeight = g.op1('Where', [inRow, g.op1('Unsqueeze', [weight, g.int64([0])]), g.op1('CastLike', [g.int64([0], []), responseMask])]);
  return { index, weight, rowWeight };
}

/**
 * ResponsePositions of listed predictions (packed rows, TeacherForcedOptions.packed): prediction r
 * belongs to row predictRow[r] of the `rows` rows (a [N] tensor of the loss's float type gives N).
 */
export function emitListedResponsePositions(g: GraphBuilder, predictFrom: string, predictRow: string, rows: string): ResponsePositions {
  const n = g.op1('Reshape', [g.op1('Shape', [rows]), g.int64([], [0])]);
  const rowIds = g.op1('Range', [g.int64([0], []), n, g.int64([1], [])]);
  const inRow = g.op1('Equal', [g.op1('Unsqueeze', [rowIds, g.int64([1])]), g.op1('Unsqueeze', [predictRow, g.int64([0])])]); // [N,R]
  const weight = g.op1('CastLike', [g.op1('Equal', [predictRow, predictRow]), rows]); // ones [R]
  return { index: predictFrom, weight, rowWeight: g.op1('CastLike', [inRow, rows]) };
}
