/**
 * Arena tasks: short instructions with one checkable answer. Four families —
 *   reverse  "reverse the word tamok"              → "komat"
 *   upper    "uppercase the word tamok"            → "TAMOK"
 *   count    "count the letter a in banana"        → "3"
 *   add      "add 23 and 48"                       → "71"
 *   lookup   "b=rilo, k=tam, z=pesu. what is k?"   → "tam"
 * Prompts stay ≤ 40 characters, answers ≤ 8. Sets are seeded; the held-out eval set and the train
 * set never share a prompt text.
 */
import { deriveSeed, Rng } from '../util/random.ts';
import { pseudoWord } from './text.ts';

export const TASK_FAMILIES = ['reverse', 'upper', 'count', 'add', 'lookup'] as const;
export type TaskFamily = (typeof TASK_FAMILIES)[number];

export interface ArenaTask {
  id: string;
  family: TaskFamily;
  prompt: string;
  /** The one correct answer string (what follows "The answer is" in a right response). */
  answer: string;
}

const KEYS = 'bcdfghkmnprstvz';

/** Draws one task of a family. */
export function makeTask(family: TaskFamily, rng: Rng, id: string): ArenaTask {
  switch (family) {
    case 'reverse': {
      const w = pseudoWord(rng);
      return { id, family, prompt: `reverse the word ${w}`, answer: [...w].reverse().join('') };
    }
    case 'upper': {
      const w = pseudoWord(rng);
      return { id, family, prompt: `uppercase the word ${w}`, answer: w.toUpperCase() };
    }
    case 'count': {
      const w = pseudoWord(rng);
      // Mostly a letter of the word (answers ≥ 1), sometimes one that is absent (answer 0).
      const letter = rng.next() < 0.8 ? w[rng.int(w.length)] : String.fromCharCode(97 + rng.int(26));
      const n = [...w].filter((c) => c === letter).length;
      return { id, family, prompt: `count the letter ${letter} in ${w}`, answer: String(n) };
    }
    case 'add': {
      const a = rng.int(100);
      const b = rng.int(100);
      return { id, family, prompt: `add ${a} and ${b}`, answer: String(a + b) };
    }
    case 'lookup': {
      const keys = rng.shuffle([...KEYS]).slice(0, 3);
      const values: string[] = [];
      while (values.length < 3) {
        const v = pseudoWord(rng, 5);
        if (!values.includes(v)) values.push(v);
      }
      const q = rng.int(3);
      const facts = keys.map((k, i) => `${k}=${values[i]}`).join(', ');
      return { id, family, prompt: `${facts}. what is ${keys[q]}?`, answer: values[q] };
    }
  }
}

export interface TaskSetOptions {
  seed: number;
  count: number;
  /** Families in round-robin order (default: all). */
  families?: readonly TaskFamily[];
  /** Labels the set in ids and seed derivation, e.g. 'train' or 'eval'. */
  split: string;
  /** Prompt texts the set must avoid (e.g. the eval set's, when drawing the train set). */
  exclude?: ReadonlySet<string>;
}

/** A seeded set of distinct prompts, families in round-robin order. */
export function makeTaskSet(options: TaskSetOptions): ArenaTask[] {
  const families = options.families ?? TASK_FAMILIES;
  if (families.length === 0) throw new Error('makeTaskSet: families is empty');
  for (const f of families) if (!TASK_FAMILIES.includes(f)) throw new Error(`makeTaskSet: unknown family '${f}' (known: ${TASK_FAMILIES.join(', ')})`);
  if (!(Number.isInteger(options.count) && options.count >= 0)) throw new Error(`makeTaskSet: count must be a non-negative integer, got ${options.count}`);
  const rng = new Rng(deriveSeed(options.seed, 'arena', options.split));
  const seen = new Set<string>();
  const tasks: ArenaTask[] = [];
  for (let i = 0; i < options.count; i++) {
    const family = families[i % families.length];
    for (let attempt = 0; ; attempt++) {
      if (attempt === 1000) throw new Error(`makeTaskSet: cannot draw ${options.count} distinct '${family}' prompts`);
      const task = makeTask(family, rng, `${options.split}-${i}`);
      if (seen.has(task.prompt) || options.exclude?.has(task.prompt)) continue;
      seen.add(task.prompt);
      tasks.push(task);
      break;
    }
  }
  return tasks;
}

/** Train and held-out eval prompt sets that share no prompt text. */
export function makeArenaSplits(options: { seed: number; trainSize: number; evalSize: number; families?: readonly TaskFamily[] }): {
  train: ArenaTask[];
  eval: ArenaTask[];
} {
  const evalSet = makeTaskSet({ seed: options.seed, count: options.evalSize, families: options.families, split: 'eval' });
  const train = makeTaskSet({
    seed: options.seed,
    count: options.trainSize,
    families: options.families,
    split: 'train',
    exclude: new Set(evalSet.map((t) => t.prompt)),
  });
  return { train, eval: evalSet };
}
