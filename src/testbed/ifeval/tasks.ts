/**
 * IFEval-style tasks: a base request (written here: 9 request forms × 32 topics = 288 requests) plus
 * one or two verifiable constraints (constraints.ts). The splits are fixed — they do not depend on the
 * run seed, so every seed is measured on the same prompts — and disjoint by topic: the train split
 * (D_offline and DICE's prompt stream), the validation split (choosing the recipe) and the test split
 * (the reported table) share no base request and no topic.
 */
import { deriveSeed, Rng } from '../../util/random.ts';
import { checkConstraint, compatible, CONSTRAINT_KINDS, instructionText, type Constraint, type ConstraintKind } from './constraints.ts';

export const TOPICS = [
  'coffee', 'the ocean', 'public libraries', 'bicycles', 'the moon', 'volcanoes', 'honeybees', 'rainforests',
  'chess', 'the internet', 'recycling', 'sleep', 'jazz music', 'winter', 'trains', 'gardening',
  'the Roman Empire', 'solar power', 'friendship', 'mountains', 'cats', 'baking bread', 'electric cars', 'museums',
  'rivers', 'photography', 'the human heart', 'deserts', 'kites', 'board games', 'tea', 'lighthouses',
] as const;

const REQUEST_FORMS: ReadonlyArray<(topic: string) => string> = [
  (t) => `Describe ${t}.`,
  (t) => `Explain why ${t} matters to people.`,
  (t) => `List some interesting facts about ${t}.`,
  (t) => `Write a short note to a friend about ${t}.`,
  (t) => `Give a beginner some advice about ${t}.`,
  (t) => `Summarize what a student should know about ${t}.`,
  (t) => `Write a short story that involves ${t}.`,
  (t) => `Write a brief introduction for a blog post about ${t}.`,
  (t) => `Tell me what you like about ${t}.`,
];

/** All base requests, topic-major. */
export function baseRequests(): Array<{ topic: string; request: string }> {
  return TOPICS.flatMap((topic) => REQUEST_FORMS.map((form) => ({ topic, request: form(topic) })));
}

export interface IfevalTask {
  id: string;
  /** The full prompt: base request, then the instruction sentences. */
  prompt: string;
  request: string;
  topic: string;
  constraints: Constraint[];
}

export type IfevalSplit = 'train' | 'validation' | 'test';

const KEYWORDS = ['history', 'simple', 'future', 'beautiful', 'important', 'daily', 'nature', 'people', 'energy', 'water', 'quiet', 'small'];
const END_PHRASES = ['Is there anything else I can help with?', 'Thank you for reading.', 'That is all.', 'Have a nice day.'];

/** One constraint of a kind, its parameters drawn from the rng. */
export function drawConstraint(kind: ConstraintKind, request: string, rng: Rng): Constraint {
  switch (kind) {
    case 'bullets':
      return { kind, n: 2 + rng.int(3) };
    case 'maxWords':
      return { kind, n: [20, 30, 40, 50][rng.int(4)] };
    case 'minWords':
      return { kind, n: [30, 40, 50][rng.int(3)] };
    case 'paragraphs':
      return { kind, n: 2 + rng.int(2) };
    case 'include':
    case 'avoid':
      return { kind, word: KEYWORDS[rng.int(KEYWORDS.length)] };
    case 'endPhrase':
      return { kind, phrase: END_PHRASES[rng.int(END_PHRASES.length)] };
    case 'repeat':
      return { kind, request };
    default:
      return { kind };
  }
}

/** The prompt of a request with constraints (one instruction sentence each, in order). */
export function ifevalPrompt(request: string, constraints: readonly Constraint[]): string {
  return [request, ...constraints.map(instructionText)].join(' ');
}

/** A task: 1 or 2 constraints (half each), kinds in round-robin over the index so every kind is covered. */
export function makeIfevalTask(id: string, topic: string, request: string, index: number, rng: Rng): IfevalTask {
  const first = CONSTRAINT_KINDS[index % CONSTRAINT_KINDS.length];
  const kinds: ConstraintKind[] = [first];
  if (rng.next() < 0.5) {
    const others = CONSTRAINT_KINDS.filter((k) => compatible(first, k));
    kinds.push(others[rng.int(others.length)]);
  }
  const constraints = kinds.map((k) => drawConstraint(k, request, rng));
  return { id, prompt: ifevalPrompt(request, constraints), request, topic, constraints };
}

/** Topics of each split: 18 train, 6 validation, 8 test, by a fixed shuffle. */
export function splitTopics(): Record<IfevalSplit, string[]> {
  const topics = new Rng(deriveSeed(0, 'ifeval-topics')).shuffle([...TOPICS]);
  return { test: topics.slice(0, 8), validation: topics.slice(8, 14), train: topics.slice(14) };
}

/**
 * The tasks of a split: every base request of the split's topics, `perRequest` times with freshly
 * drawn constraints (train uses 2 for a larger prompt stream; validation and test 1). Fixed, not seeded
 * by the run.
 */
export function makeIfevalSplit(split: IfevalSplit, perRequest = split === 'train' ? 2 : 1): IfevalTask[] {
  const topics = new Set(splitTopics()[split]);
  const rng = new Rng(deriveSeed(0, 'ifeval', split));
  const tasks: IfevalTask[] = [];
  const requests = baseRequests().filter((r) => topics.has(r.topic));
  for (let r = 0; r < perRequest; r++) {
    requests.forEach((b, i) => tasks.push(makeIfevalTask(`${split}-${tasks.length}`, b.topic, b.request, r * requests.length + i, rng)));
  }
  return tasks;
}

/** Per-constraint verdicts of one response. */
export function checkTask(task: IfevalTask, response: string): boolean[] {
  return task.constraints.map((c) => checkConstraint(c, response));
}

/** Ground-truth quality for the judge: the fraction of the task's constraints the response follows. */
export function ifevalQuality(task: IfevalTask, response: string): number {
  const v = checkTask(task, response);
  return v.filter(Boolean).length / v.length;
}

export interface IfevalAccuracy {
  /** Fraction of prompts whose every constraint is followed (IFEval's prompt-level strict accuracy). */
  promptLevel: number;
  /** Fraction of all constraints followed (instruction-level strict accuracy). */
  instructionLevel: number;
  prompts: number;
  instructions: number;
  /** Instruction-level accuracy per kind (kinds that occur). */
  byKind: Partial<Record<ConstraintKind, { followed: number; total: number }>>;
}

export function ifevalAccuracy(items: ReadonlyArray<{ task: IfevalTask; response: string }>): IfevalAccuracy {
  let promptsOk = 0;
  let followed = 0;
  let total = 0;
  const byKind: IfevalAccuracy['byKind'] = {};
  for (const { task, response } of items) {
    const v = checkTask(task, response);
    if (v.every(Boolean)) promptsOk++;
    v.forEach((ok, j) => {
      const k = (byKind[task.constraints[j].kind] ??= { followed: 0, total: 0 });
      k.total++;
      if (ok) k.followed++;
    });
    followed += v.filter(Boolean).length;
    total += v.length;
  }
  return { promptLevel: items.length ? promptsOk / items.length : NaN, instructionLevel: total ? followed / total : NaN, prompts: items.length, instructions: total, byKind };
}
