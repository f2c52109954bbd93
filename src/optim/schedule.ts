/**
 * Constant learning rate with linear warm-up, as transformers' get_constant_schedule_with_warmup:
 * the update after `completed` optimizer steps uses lr · min(1, completed / warmup) — so the very
 * first update (completed = 0) has lr 0 when warm-up is on. The paper uses 50 warm-up steps.
 */
export interface LrSchedule {
  lr: number;
  warmupSteps: number;
}

export function learningRateAt(schedule: LrSchedule, completed: number): number {
  if (schedule.warmupSteps <= 0 || completed >= schedule.warmupSteps) return schedule.lr;
  return (schedule.lr * completed) / schedule.warmupSteps;
}
