/** What `dice replay --verify` reports: per round and stage, whether the re-derived records equal the recorded ones. */

export const VERIFY_STAGES = ['samples', 'scored', 'pairs', 'batches', 'checkpoints'] as const;
export type VerifyStage = (typeof VERIFY_STAGES)[number];

export interface StageDifference {
  /** The record's key on its topic (promptId; round/step for batches; version for checkpoints). */
  key: string;
  /** Field path within the record ('' when the record is missing on one side). */
  path: string;
  recorded: unknown;
  rederived: unknown;
}

export interface StageVerdict {
  round: number;
  stage: VerifyStage;
  /** The topic whose records were compared (base name). */
  topic: string;
  /** Records compared: the union of recorded and re-derived keys. */
  records: number;
  differing: number;
  identical: boolean;
  /** The first differing record (in key order) and its first differing field. */
  first: StageDifference | null;
  seconds: number;
}

export interface VerifyReport {
  source: string;
  identical: boolean;
  stages: StageVerdict[];
  runtime: { recorded: { onnxruntime: string | null; threads: number | null; node: string | null }; current: { onnxruntime: string; node: string } };
  warnings: string[];
}
