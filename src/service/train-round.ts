import { from, lastValueFrom, tap, toArray } from 'rxjs';
import type { TrainingBatch } from '../../topics/batches.ts';
import type { Checkpoint } from '../../topics/checkpoints.ts';
import { train, type TrainEvent, type TrainerPort } from '../../operators/train.ts';
import type { RunConfig } from '../config/schema.ts';
import { Scorer } from '../engine/scorer.ts';
import { Trainer } from '../engine/trainer.ts';
import type { RoundVersions } from './lineage.ts';
import { engineOptions, trainerOptions } from './round-config.ts';

export interface TrainRoundInputs {
  config: RunConfig;
  round: number;
  versions: RoundVersions;
  /** In step order. */
  batches: TrainingBatch[];
  /** Model directory of a version (π_ref(0) is −1). */
  dirOf: (version: number) => string;
  checkpointDir: string;
  /** Wraps engine work (opening, steps, saving) — e.g. to time it. */
  clock?: <R>(work: Promise<R>) => Promise<R>;
  onStep?: (event: Extract<TrainEvent, { kind: 'step' }>) => void;
}

/**
 * Round t's training, the same for `run`, `serve` and `replay --verify`: open the trainer on π_θ(t−1)
 * (and, for KTO, a reference scorer), one DPO step per batch, then checkpoint v_t.
 */
export async function trainRound(inputs: TrainRoundInputs): Promise<{ events: TrainEvent[]; checkpoint: Checkpoint }> {
  const { config, round, versions } = inputs;
  const clock = inputs.clock ?? (<R>(work: Promise<R>) => work);
  const engine = await clock(Trainer.open({ modelDir: inputs.dirOf(versions.policy) }, trainerOptions(config)));
  const trainer: TrainerPort = { step: (b) => clock(engine.step(b)), save: (d, m) => clock(engine.save(d, m)) };
  const ktoReference = config.train.loss === 'kto' ? await Scorer.open({ modelDir: inputs.dirOf(versions.trainingReference), ...engineOptions(config) }) : null;
  try {
    const events = await lastValueFrom(
      from(inputs.batches).pipe(
        train({
          trainer,
          round,
          version: versions.produces,
          parentVersion: versions.policy,
          referenceVersion: versions.trainingReference,
          checkpointDir: inputs.checkpointDir,
          kto: ktoReference ? { reference: ktoReference } : undefined,
        }),
        tap((e) => {
          if (e.kind === 'step') inputs.onStep?.(e);
        }),
        toArray(),
      ),
    );
    const last = events[events.length - 1];
    if (last?.kind !== 'checkpoint') throw new Error(`round ${round}: training ended without a checkpoint`);
    return { events, checkpoint: last.checkpoint };
  } finally {
    await engine.close();
    await ktoReference?.close();
  }
}
