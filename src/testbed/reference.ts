/**
 * Reference answers for win rates (the arena's "GPT-4 Turbo" of AlpacaEval): one fixed response per
 * eval prompt, decent and of medium length — right on most prompts, a near miss on the others, with
 * one piece of filler. Seeded per prompt, so a prompt's reference never depends on the rest of the set.
 */
import { deriveSeed, Rng } from '../util/random.ts';
import { partialAnswer } from './policies.ts';
import type { ArenaTask } from './tasks.ts';
import { composeResponse } from './text.ts';

export interface ReferenceOptions {
  /** P(the reference is right) (default 0.8). */
  pCorrect?: number;
}

export function referenceResponse(task: ArenaTask, seed: number, options: ReferenceOptions = {}): string {
  const rng = new Rng(deriveSeed(seed, 'reference', task.prompt));
  const answer = rng.next() < (options.pCorrect ?? 0.8) ? task.answer : partialAnswer(task, rng);
  return composeResponse(answer, 1, rng);
}
