import { batchesTopic, batchKey, type TrainingBatch } from '../../topics/batches.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { versionLabel } from '../../operators/train.ts';
import { trainRound } from '../service/train-round.ts';
import { stageEvent, type RoundStage } from './stage.ts';

export interface TrainDeps {
  /** Where v_t's weights go. */
  checkpointDir: string;
  /** Wraps engine work (opening, steps, saving), e.g. to time it. */
  clock?: <R>(work: Promise<R>) => Promise<R>;
  /** Each step as it is made (e.g. a progress bar). */
  onStep?: (step: number, loss: number, rewardAccuracy: number) => void;
}

/**
 * Alg. 1 line 6 — batches → checkpoint v_t: one DPO step (Eq. 3, src/losses/preference.ts, through
 * the trainer's gradient graph) per batch in step order, from π_θ(t−1) with the round's training
 * reference, then v_t with its lineage and sha256 (src/service/train-round.ts).
 */
export const trainStage: RoundStage<TrainingBatch, Checkpoint, TrainDeps, Checkpoint, 'train/step' | 'checkpoint/published'> = {
  kind: 'whole-round',
  name: 'train',
  input: { topic: 'batches', contract: batchesTopic, key: batchKey },
  output: { topic: 'checkpoints', contract: checkpointsTopic, key: (c) => String(c.version) },
  emits: ['train/step', 'checkpoint/published'],
  inRound: (b, ctx) => b.round === ctx.versions.round,
  order: (a, b) => a.step - b.step,
  async derive(batches, deps, ctx) {
    const { config, versions } = ctx;
    if (batches.length === 0) throw new Error(`round ${versions.round}: no training batches`);
    const { checkpoint } = await trainRound({
      config,
      round: versions.round,
      versions,
      batches,
      dirOf: ctx.dirOf,
      checkpointDir: deps.checkpointDir,
      clock: deps.clock,
      onStep: ({ step, metrics: m }) => {
        deps.onStep?.(step, m.loss, m.rewardAccuracy);
        ctx.emit?.(
          stageEvent('train/step', {
            step,
            globalStep: (versions.round - 1) * config.train.steps + step + 1,
            loss: m.loss,
            rewardAccuracy: m.rewardAccuracy,
            chosenReward: m.chosenReward,
            rejectedReward: m.rejectedReward,
            margin: m.margin,
            gradNorm: m.gradNorm,
            lr: m.lr,
            tokensPerSecond: m.tokens / m.seconds,
          }),
        );
      },
    });
    return checkpoint;
  },
  logLines: (c) => [{ msg: 'checkpoint', fields: { version: versionLabel(c.version), sha256: c.sha256, ...c.metrics } }],
  outputs: (c) => [c],
  project: (c) => [
    stageEvent('checkpoint/published', {
      version: c.version,
      parentVersion: c.parentVersion,
      referenceVersion: c.referenceVersion,
      sha256: c.sha256,
      finalLoss: c.metrics.finalLoss ?? null,
    }),
  ],
};
