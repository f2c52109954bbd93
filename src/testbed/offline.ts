/**
 * Data made by the behaviour policies: SFT examples and the offline preference set D_offline,
 * labelled by the length-biased judge (so D_offline, like UltraFeedback judged by GPT-4, carries a
 * mild preference for longer answers). Every draw is seeded per prompt.
 */
import { deriveSeed, Rng } from '../util/random.ts';
import { DEFAULT_JUDGE, judgeLabel, type JudgeOptions } from './judge.ts';
import { BEHAVIOUR_POLICIES, makeBehaviourPolicy, type PolicySpec } from './policies.ts';
import type { ArenaTask } from './tasks.ts';

export interface SftExample {
  promptId: string;
  prompt: string;
  response: string;
  policy: string;
}

export interface OfflinePair {
  promptId: string;
  prompt: string;
  chosen: string;
  rejected: string;
  /** The judge's P(chosen ≻ rejected) the label was drawn with. */
  pChosen: number;
}

/** One response per task (repeated `perTask` times), each from a policy drawn from `policies`. */
export function makeSftExamples(
  tasks: readonly ArenaTask[],
  options: { seed: number; policies?: readonly PolicySpec[]; perTask?: number },
): SftExample[] {
  const specs = options.policies ?? BEHAVIOUR_POLICIES;
  const policies = specs.map(makeBehaviourPolicy);
  const out: SftExample[] = [];
  for (const task of tasks) {
    for (let r = 0; r < (options.perTask ?? 1); r++) {
      const rng = new Rng(deriveSeed(options.seed, 'sft', task.id, r));
      const p = rng.int(policies.length);
      out.push({ promptId: task.id, prompt: task.prompt, response: policies[p](task, rng), policy: specs[p].name });
    }
  }
  return out;
}

/**
 * One judged pair per task: two responses from two independently drawn policies (redrawn while the
 * texts are equal, up to a few tries — a task whose responses always coincide is skipped), labelled
 * by one stochastic judge call.
 */
export function makeOfflinePairs(
  tasks: readonly ArenaTask[],
  options: { seed: number; policies?: readonly PolicySpec[]; judge?: JudgeOptions },
): OfflinePair[] {
  const specs = options.policies ?? BEHAVIOUR_POLICIES;
  const policies = specs.map(makeBehaviourPolicy);
  const judge = options.judge ?? DEFAULT_JUDGE;
  const out: OfflinePair[] = [];
  for (const task of tasks) {
    const rng = new Rng(deriveSeed(options.seed, 'offline', task.id));
    for (let attempt = 0; attempt < 8; attempt++) {
      const a = policies[rng.int(policies.length)](task, rng);
      const b = policies[rng.int(policies.length)](task, rng);
      if (a === b) continue;
      const { aWins, pA } = judgeLabel(task, a, b, rng, judge);
      out.push(
        aWins
          ? { promptId: task.id, prompt: task.prompt, chosen: a, rejected: b, pChosen: pA }
          : { promptId: task.id, prompt: task.prompt, chosen: b, rejected: a, pChosen: 1 - pA },
      );
      break;
    }
  }
  return out;
}
