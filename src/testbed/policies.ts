/**
 * Behaviour policies of mixed quality: pure functions (task, rng) → response text that answer right,
 * nearly right (partly) or wrong, with or without filler. They make the SFT data and the responses
 * of the offline preference set D_offline. Quality and length are independent in every policy, so
 * any length preference the DPO-tuned model picks up comes from the judge's labels — as in the paper.
 */
import type { Rng } from '../util/random.ts';
import type { ArenaTask } from './tasks.ts';
import { composeResponse, type FillerLevel } from './text.ts';

export interface PolicySpec {
  name: string;
  /** P(right answer), P(near miss); the rest are wrong answers or, with pNoAnswer of all, filler only. */
  pCorrect: number;
  pPartial: number;
  pNoAnswer?: number;
  /** Probabilities of filler levels 0, 1, 2. */
  filler: readonly [number, number, number];
}

export type BehaviourPolicy = (task: ArenaTask, rng: Rng) => string;

/** The mix used to build SFT data and D_offline: careful and sloppy, terse and chatty. */
export const BEHAVIOUR_POLICIES: readonly PolicySpec[] = [
  { name: 'expert-terse', pCorrect: 0.9, pPartial: 0.08, filler: [0.8, 0.15, 0.05] },
  { name: 'expert-chatty', pCorrect: 0.85, pPartial: 0.1, filler: [0.05, 0.25, 0.7] },
  { name: 'novice-terse', pCorrect: 0.35, pPartial: 0.3, pNoAnswer: 0.05, filler: [0.8, 0.15, 0.05] },
  { name: 'novice-chatty', pCorrect: 0.35, pPartial: 0.3, pNoAnswer: 0.05, filler: [0.05, 0.25, 0.7] },
];

export function makeBehaviourPolicy(spec: PolicySpec): BehaviourPolicy {
  const pNoAnswer = spec.pNoAnswer ?? 0;
  const total = spec.pCorrect + spec.pPartial + pNoAnswer;
  if (!(spec.pCorrect >= 0 && spec.pPartial >= 0 && pNoAnswer >= 0 && total <= 1 + 1e-12)) {
    throw new Error(`policy '${spec.name}': pCorrect, pPartial, pNoAnswer must be ≥ 0 and sum to ≤ 1`);
  }
  const fillerSum = spec.filler[0] + spec.filler[1] + spec.filler[2];
  if (spec.filler.some((p) => p < 0) || Math.abs(fillerSum - 1) > 1e-9) {
    throw new Error(`policy '${spec.name}': filler probabilities must be ≥ 0 and sum to 1, got ${spec.filler.join(', ')}`);
  }
  return (task, rng) => {
    const u = rng.next();
    const answer =
      u < spec.pCorrect
        ? task.answer
        : u < spec.pCorrect + spec.pPartial
          ? partialAnswer(task, rng)
          : u < total
            ? null
            : wrongAnswer(task, rng);
    const v = rng.next();
    const level: FillerLevel = v < spec.filler[0] ? 0 : v < spec.filler[0] + spec.filler[1] ? 1 : 2;
    return composeResponse(answer, level, rng);
  };
}

/**
 * A near miss of the kind a small model makes itself: off by one for numbers; for words one letter
 * miscopied (see miscopy).
 */
export function partialAnswer(task: ArenaTask, rng: Rng): string {
  if (task.family === 'count' || task.family === 'add') {
    const n = Number(task.answer);
    return String(n === 0 || rng.next() < 0.5 ? n + 1 : n - 1);
  }
  return miscopy(task.answer, 1, rng, task.family === 'upper');
}

/**
 * The word with `letters` distinct positions miscopied: each replaced by another letter of the same
 * word — the slip a copy-attention makes — or a random one when the word has a single distinct letter.
 */
export function miscopy(word: string, letters: number, rng: Rng, upper: boolean): string {
  const chars = [...word];
  const positions = rng.shuffle(chars.map((_, i) => i)).slice(0, Math.min(letters, chars.length));
  for (const i of positions) {
    const others = [...new Set(chars.filter((c) => c !== chars[i]))];
    const inCase = (c: string) => (upper ? c.toUpperCase() : c);
    let c = others.length > 0 ? others[rng.int(others.length)] : chars[i];
    while (c === chars[i]) c = inCase(String.fromCharCode(97 + rng.int(26)));
    chars[i] = c;
  }
  return chars.join('');
}

/** A clearly wrong answer of the kind a confused model gives. */
export function wrongAnswer(task: ArenaTask, rng: Rng): string {
  switch (task.family) {
    case 'reverse':
      return task.prompt.slice('reverse the word '.length); // not reversed at all
    case 'upper':
      return task.answer.toLowerCase();
    case 'count':
      return String(Number(task.answer) + 2 + rng.int(3));
    case 'add': {
      const n = Number(task.answer);
      const off = 5 + rng.int(16);
      return String(n >= off && rng.next() < 0.5 ? n - off : n + off);
    }
    case 'lookup': {
      // Another key's value from the prompt.
      const values = [...task.prompt.matchAll(/=([a-z]+)/g)].map((m) => m[1]).filter((v) => v !== task.answer);
      return values[rng.int(values.length)];
    }
  }
}
