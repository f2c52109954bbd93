/**
 * Evaluation against the reference answers, the AlpacaEval 2 way:
 *  - win rate WR = 100 · mean_x P_judge(model ≻ reference | x) (judge probabilities averaged);
 *  - length-controlled win rate: fit the GLM
 *      logit P(model ≻ ref | x) = θ + φ·tanh(Δlen_x / σ_len) [+ ψ·d_x]
 *    (Δlen = |model| − |reference| in characters, σ_len the std of Δlen over the set, d_x an optional
 *    instruction difficulty) on the judge probabilities, then LC = 100 · σ(θ) — the win rate the
 *    model would have at zero length difference (with difficulty: 100 · mean_x σ(θ + ψ·d_x));
 *  - average length and mean ground-truth quality Q;
 *  - agreement of implicit-reward preferences with the judge (paper Table 5).
 */
import { charLength } from '../dice/reward.ts';
import { fitLogistic } from './glm.ts';
import { DEFAULT_JUDGE, judgeProbabilityFrom, sigmoid, type JudgeOptions, type QualityFn } from './judge.ts';
import { quality } from './quality.ts';
import type { ArenaTask } from './tasks.ts';
import { deriveSeed, Rng } from '../util/random.ts';

export interface EvalItem<T = ArenaTask> {
  task: T;
  response: string;
  reference: string;
  /** Instruction difficulty d_x for the GLM (all items or none). */
  difficulty?: number;
}

export interface LengthControlOptions {
  /** σ_len; default the std of Δlen over the set (1 when that is 0). */
  lengthSigma?: number;
  /** L2 penalty on φ and ψ (θ is unpenalized); default 0.01. */
  ridge?: number;
}

export interface LengthControlledResult {
  /** LC win rate in percent. */
  lcWinRate: number;
  theta: number;
  phi: number;
  psi: number | null;
  lengthSigma: number;
  converged: boolean;
}

/** Fits the length-controlled GLM to per-prompt preferences P(model ≻ ref) and length differences. */
export function lengthControlledWinRate(
  preferences: ArrayLike<number>,
  lengthDiffs: ArrayLike<number>,
  difficulty?: ArrayLike<number>,
  options: LengthControlOptions = {},
): LengthControlledResult {
  const n = preferences.length;
  if (n === 0) throw new Error('lengthControlledWinRate: no items');
  if (lengthDiffs.length !== n) throw new Error(`lengthControlledWinRate: ${n} preferences but ${lengthDiffs.length} length differences`);
  if (difficulty && difficulty.length !== n) throw new Error(`lengthControlledWinRate: ${n} preferences but ${difficulty.length} difficulties`);
  let sigma = options.lengthSigma;
  if (sigma === undefined) {
    let mean = 0;
    for (let i = 0; i < n; i++) mean += lengthDiffs[i] / n;
    let v = 0;
    for (let i = 0; i < n; i++) v += (lengthDiffs[i] - mean) ** 2;
    sigma = n > 1 ? Math.sqrt(v / (n - 1)) : 0;
    if (!(sigma > 0)) sigma = 1;
  }
  if (!(sigma > 0)) throw new Error(`lengthControlledWinRate: lengthSigma must be > 0, got ${options.lengthSigma}`);
  const ones = new Float64Array(n).fill(1);
  const lengthTerm = Float64Array.from({ length: n }, (_, i) => Math.tanh(lengthDiffs[i] / sigma));
  const columns: ArrayLike<number>[] = [ones, lengthTerm];
  if (difficulty) columns.push(difficulty);
  const lambda = options.ridge ?? 0.01;
  const fit = fitLogistic(columns, preferences, { ridge: columns.map((_, k) => (k === 0 ? 0 : lambda)) });
  const theta = fit.coef[0];
  const psi = difficulty ? fit.coef[2] : null;
  let lc = 0;
  if (difficulty && psi !== null) {
    for (let i = 0; i < n; i++) lc += sigmoid(theta + psi * difficulty[i]) / n;
  } else {
    lc = sigmoid(theta);
  }
  return { lcWinRate: 100 * lc, theta, phi: fit.coef[1], psi, lengthSigma: sigma, converged: fit.converged };
}

export interface EvalResult extends LengthControlledResult {
  n: number;
  /** Raw win rate in percent (judge probabilities averaged). */
  winRate: number;
  avgLength: number;
  avgReferenceLength: number;
  meanQuality: number;
  meanReferenceQuality: number;
  /** Per-item judge probabilities P(model ≻ reference). */
  preferences: Float64Array;
  /** Per-item |model| − |reference| in characters. */
  lengthDiffs: Float64Array;
}

/** WR, LC, length and quality of one model's responses against the references. */
export function evaluateResponses<T = ArenaTask>(
  items: readonly EvalItem<T>[],
  options: LengthControlOptions & { judge?: JudgeOptions; quality?: QualityFn<T> } = {},
): EvalResult {
  const n = items.length;
  if (n === 0) throw new Error('evaluateResponses: no items');
  const withDifficulty = items.filter((it) => it.difficulty !== undefined).length;
  if (withDifficulty !== 0 && withDifficulty !== n) {
    throw new Error(`evaluateResponses: difficulty is set on ${withDifficulty} of ${n} items; set it on all or none`);
  }
  const judge = options.judge ?? DEFAULT_JUDGE;
  const qualityOf = options.quality ?? (quality as unknown as QualityFn<T>);
  const preferences = new Float64Array(n);
  const lengthDiffs = new Float64Array(n);
  let len = 0;
  let refLen = 0;
  let q = 0;
  let refQ = 0;
  items.forEach((it, i) => {
    const qa = qualityOf(it.task, it.response);
    const qb = qualityOf(it.task, it.reference);
    const la = charLength(it.response);
    const lb = charLength(it.reference);
    preferences[i] = judgeProbabilityFrom(qa, qb, la, lb, judge);
    lengthDiffs[i] = la - lb;
    len += la;
    refLen += lb;
    q += qa;
    refQ += qb;
  });
  const difficulty = withDifficulty === n ? Float64Array.from(items, (it) => it.difficulty as number) : undefined;
  const lc = lengthControlledWinRate(preferences, lengthDiffs, difficulty, options);
  let wr = 0;
  for (let i = 0; i < n; i++) wr += preferences[i];
  return {
    ...lc,
    n,
    winRate: (100 * wr) / n,
    avgLength: len / n,
    avgReferenceLength: refLen / n,
    meanQuality: q / n,
    meanReferenceQuality: refQ / n,
    preferences,
    lengthDiffs,
  };
}

/** One model's items for the bootstrap: judge probabilities and length differences, item i on prompt promptOf[i]. */
export interface BootstrapInput {
  preferences: ArrayLike<number>;
  lengthDiffs: ArrayLike<number>;
  /** σ_len of the full set when already fitted (an EvalResult carries it); computed otherwise. */
  lengthSigma?: number;
}

/**
 * Prompt-level bootstrap of the LC win rate (AlpacaEval's intervals resample instructions): each draw
 * resamples prompts with replacement, all of a prompt's samples together, and refits the GLM with the
 * full set's σ_len. Every model is drawn on the same resampled prompts, so differences between models
 * are paired. Returns LC per draw per model; seeded, so a result repeats.
 */
export function bootstrapLcWinRates(
  models: readonly BootstrapInput[],
  promptOf: ArrayLike<number>,
  options: { resamples?: number; seed: number } & LengthControlOptions,
): Float64Array[] {
  const n = promptOf.length;
  for (const m of models) {
    if (m.preferences.length !== n || m.lengthDiffs.length !== n) throw new Error(`bootstrapLcWinRates: a model has ${m.preferences.length} items, expected ${n}`);
  }
  const prompts: number[][] = [];
  for (let i = 0; i < n; i++) (prompts[promptOf[i]] ??= []).push(i);
  const byPrompt = prompts.filter((p) => p !== undefined);
  const resamples = options.resamples ?? 200;
  const rng = new Rng(deriveSeed(options.seed, 'lc-bootstrap'));
  const sigmas = models.map((m) => m.lengthSigma ?? lengthControlledWinRate(m.preferences, m.lengthDiffs, undefined, options).lengthSigma);
  const draws = models.map(() => new Float64Array(resamples));
  for (let b = 0; b < resamples; b++) {
    const items: number[] = [];
    for (let j = 0; j < byPrompt.length; j++) items.push(...byPrompt[rng.int(byPrompt.length)]);
    models.forEach((m, k) => {
      const pref = Float64Array.from(items, (i) => m.preferences[i]);
      const diffs = Float64Array.from(items, (i) => m.lengthDiffs[i]);
      draws[k][b] = lengthControlledWinRate(pref, diffs, undefined, { ...options, lengthSigma: sigmas[k] }).lcWinRate;
    });
  }
  return draws;
}

export interface AgreementItem {
  /** Implicit rewards of the two responses. */
  rewardA: number;
  rewardB: number;
  /** The judge's P(a ≻ b). */
  judgeProbA: number;
  /** A sampled judge label (a preferred?); without it the judge's majority (P > ½) is the label. */
  aWins?: boolean;
}

export interface AgreementResult {
  n: number;
  /** Fraction of pairs where the reward prefers what the judge's label prefers (ties count ½) — Table 5's alignment rate m/n. */
  agreement: number;
  /** Mean probability that the judge picks the reward's choice (the expected alignment rate under label noise). */
  expectedAgreement: number;
  /** Pairs whose rewards tie. */
  ties: number;
}

export function rewardJudgeAgreement(items: readonly AgreementItem[]): AgreementResult {
  if (items.length === 0) throw new Error('rewardJudgeAgreement: no items');
  let agree = 0;
  let expected = 0;
  let ties = 0;
  for (const it of items) {
    const judgeA = it.aWins === undefined ? (it.judgeProbA === 0.5 ? 0.5 : it.judgeProbA > 0.5 ? 1 : 0) : it.aWins ? 1 : 0;
    if (it.rewardA === it.rewardB) {
      ties++;
      agree += 0.5;
      expected += 0.5;
    } else if (it.rewardA > it.rewardB) {
      agree += judgeA;
      expected += it.judgeProbA;
    } else {
      agree += 1 - judgeA;
      expected += 1 - it.judgeProbA;
    }
  }
  return { n: items.length, agreement: agree / items.length, expectedAgreement: expected / items.length, ties };
}

/**
 * Prompt-level bootstrap standard error of a mean (win rate, accuracy, length): the same resampling of
 * prompts as bootstrapLcWinRates (all of a prompt's items together), seeded. values[i] is item i's value.
 */
export function bootstrapMeanStdErr(values: ArrayLike<number>, promptOf: ArrayLike<number>, options: { resamples?: number; seed: number }): number {
  const n = promptOf.length;
  if (values.length !== n) throw new Error(`bootstrapMeanStdErr: ${values.length} values for ${n} items`);
  if (n === 0) return NaN;
  const prompts: number[][] = [];
  for (let i = 0; i < n; i++) (prompts[promptOf[i]] ??= []).push(i);
  const byPrompt = prompts.filter((p) => p !== undefined);
  const resamples = options.resamples ?? 200;
  const rng = new Rng(deriveSeed(options.seed, 'mean-bootstrap'));
  const means = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) {
    let sum = 0;
    let count = 0;
    for (let j = 0; j < byPrompt.length; j++) {
      for (const i of byPrompt[rng.int(byPrompt.length)]) {
        sum += values[i];
        count++;
      }
    }
    means[b] = sum / count;
  }
  let mean = 0;
  for (const m of means) mean += m / resamples;
  let v = 0;
  for (const m of means) v += (m - mean) ** 2;
  return Math.sqrt(v / resamples);
}
