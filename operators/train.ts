import { concatMap, defer, from, Observable, type OperatorFunction } from 'rxjs';
import type { TrainingBatch } from '../topics/batches.ts';
import type { Checkpoint } from '../topics/checkpoints.ts';
import type { CheckpointManifest } from '../src/model/checkpoint.ts';
import { ktoMismatchedRows, type PreferencePair, type SaveMeta, type StepMetrics, type TrainBatch } from '../src/engine/trainer.ts';
import type { ScorerPort } from './ports.ts';

export interface TrainerPort {
  step(batch: TrainBatch): Promise<StepMetrics>;
  save(dir: string, meta: SaveMeta): Promise<CheckpointManifest>;
}

export interface TrainOptions {
  /** Starts from π_θ(t−1) (the trainer was opened on it). */
  trainer: TrainerPort;
  round: number;
  /** The version this training produces (t) and its lineage. */
  version: number;
  parentVersion: number;
  referenceVersion: number;
  /** Where the checkpoint directory goes. */
  checkpointDir: string;
  /** KTO's reference point needs reference log-probs of mismatched pairs. */
  kto?: { reference: ScorerPort };
}

export type TrainEvent =
  | { kind: 'step'; round: number; step: number; metrics: StepMetrics }
  | { kind: 'checkpoint'; checkpoint: Checkpoint; manifest: CheckpointManifest };

/**
 * batches → DPO steps → checkpoint v_t: one optimizer step per batch (in the order given), then
 * the new policy is written in Hugging Face format with its manifest (sha256, lineage, metrics)
 * and announced as a Checkpoint record.
 *
 *   b0-b1-b2-|  train  --s0-s1-s2-(c|)
 */
export function train(options: TrainOptions): OperatorFunction<TrainingBatch, TrainEvent> {
  return (batches$) =>
    new Observable<TrainEvent>((subscriber) => {
      const history: StepMetrics[] = [];
      const steps$ = batches$.pipe(
        concatMap(async (batch): Promise<TrainEvent> => {
          const pairs: PreferencePair[] = batch.rows.map((r) => ({
            promptTokenIds: Array.from(r.promptTokenIds),
            chosenTokenIds: Array.from(r.chosenTokenIds),
            rejectedTokenIds: Array.from(r.rejectedTokenIds),
            refChosenLogp: r.chosenRefLogp,
            refRejectedLogp: r.rejectedRefLogp,
          }));
          const refMismatchedLogps = options.kto ? await mismatchedRefLogps(pairs, options.kto.reference) : undefined;
          const metrics = await options.trainer.step({ kind: 'preference', pairs, refMismatchedLogps });
          history.push(metrics);
          return { kind: 'step', round: options.round, step: batch.step, metrics };
        }),
      );
      const checkpoint$ = defer(() => from(saveCheckpoint(options, history)));
      return steps$.subscribe({
        next: (e) => subscriber.next(e),
        error: (err) => subscriber.error(err),
        complete: () => checkpoint$.subscribe(subscriber),
      });
    });
}

async function mismatchedRefLogps(pairs: PreferencePair[], reference: ScorerPort): Promise<number[]> {
  const rows = ktoMismatchedRows(pairs);
  const out = await reference.score(rows.map((r) => ({ promptTokenIds: r.prompt, responseTokenIds: r.response })));
  return out.map((o) => o.logProb);
}

async function saveCheckpoint(options: TrainOptions, history: StepMetrics[]): Promise<TrainEvent> {
  if (history.length === 0) throw new Error(`train: round ${options.round} got no batches, so there is nothing to checkpoint`);
  const last = history[history.length - 1];
  const mean = (f: (m: StepMetrics) => number) => history.reduce((s, m) => s + f(m), 0) / history.length;
  const metrics = {
    steps: history.length,
    finalLoss: last.loss,
    meanLoss: mean((m) => m.loss),
    finalRewardAccuracy: last.rewardAccuracy,
    meanRewardAccuracy: mean((m) => m.rewardAccuracy),
    finalMargin: last.margin,
    trainSeconds: history.reduce((s, m) => s + m.seconds, 0),
    tokens: history.reduce((s, m) => s + m.tokens, 0),
  };
  const manifest = await options.trainer.save(options.checkpointDir, {
    version: `v${options.version}`,
    parentVersion: `v${options.parentVersion}`,
    referenceVersion: versionLabel(options.referenceVersion),
    metrics,
  });
  const checkpoint: Checkpoint = {
    version: options.version,
    parentVersion: options.parentVersion,
    referenceVersion: options.referenceVersion,
    round: options.round,
    location: options.checkpointDir,
    sha256: manifest.sha256,
    metrics,
    createdAt: Date.parse(manifest.createdAt),
  };
  return { kind: 'checkpoint', checkpoint, manifest };
}

/** Versions as labels: v0, v1, … and 'ref0' for the initial reference π_ref(0) (version −1). */
export function versionLabel(version: number): string {
  return version < 0 ? 'ref0' : `v${version}`;
}
