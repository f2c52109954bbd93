/**
 * The one offline train loop: the bootstrap's SFT and DPO stages and `dice train` run their steps
 * through `trainSteps` (batches from src/util/epoch-batcher.ts). The pipeline's streaming form is the
 * `train` operator (operators/train.ts), one step per batch record.
 */
import type { StepMetrics, TrainBatch } from './trainer.ts';

export interface TrainerSteps {
  step(batch: TrainBatch): Promise<StepMetrics>;
}

/** `steps` optimizer steps on the batches `batchAt` gives, in order; `onStep` sees each step's metrics. */
export async function trainSteps(
  trainer: TrainerSteps,
  steps: number,
  batchAt: (step: number) => TrainBatch | Promise<TrainBatch>,
  onStep?: (metrics: StepMetrics, step: number) => void,
): Promise<StepMetrics[]> {
  const history: StepMetrics[] = [];
  for (let step = 0; step < steps; step++) {
    const metrics = await trainer.step(await batchAt(step));
    history.push(metrics);
    onStep?.(metrics, step);
  }
  return history;
}
