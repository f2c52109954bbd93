/**
 * The main job behind `npm start` (`dice start`): on the embedded bus,
 *   bootstrap (cached) → DICE for R rounds → the offline-DPO baseline (R iterations) [→ DICE with α = 0]
 *   → evaluation of every checkpoint on the held-out eval set against the reference answers
 *   → a table shaped like paper Table 1, and the data of the report (figures, agreement, checks).
 * Variants are plain run-config overrides, so `dice experiment` reuses runVariant for its ablations.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Bus } from '../../topics/bus.ts';
import { healthTopic, type HealthRecord } from '../../topics/health.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { openBus } from '../../topics/open-bus.ts';
import { topicName } from '../../topics/registry.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { loadRunConfig, type RunConfig } from '../config/schema.ts';
import { histogram, summarize, type SummaryStats } from '../dice/pairs.ts';
import { Sampler } from '../engine/sampler.ts';
import { MetricsEmitter } from '../service/metrics.ts';
import { lastPromoted } from '../service/lineage.ts';
import { runDice, type RoundSummary } from '../service/run.ts';
import { readWholeTopic } from '../service/stage-runner.ts';
import type { Logger } from '../util/log.ts';
import { Progress } from '../util/log.ts';
import { deriveSeed, Rng } from '../util/random.ts';
import { bootstrap, DEFAULT_BOOTSTRAP, type BootstrapResult, type BootstrapSettings } from './bootstrap.ts';
import { bootstrapLcWinRates, evaluateResponses, rewardJudgeAgreement, type AgreementItem, type AgreementResult, type EvalItem, type EvalResult } from './eval.ts';
import { downsample } from './figures.ts';
import { judgeProbability, type JudgeOptions, type QualityFn } from './judge.ts';
import { quality } from './quality.ts';
import { referenceResponse } from './reference.ts';
import type { ArenaTask } from './tasks.ts';

export interface EvalSettings {
  /** Responses per eval prompt (each judged against the prompt's reference). */
  samplesPerPrompt: number;
  temperature: number;
  topP: number;
  maxNewTokens: number;
}

/** What every job of the testbed shares: the seed, threads and judge, the run recipe, the evaluation. */
export interface JobSettingsCore {
  bootstrap: { seed: number; threads: number; judge: JudgeOptions };
  run: Record<string, unknown>;
  eval: EvalSettings;
  alphaZero: boolean;
}

export interface MainJobSettings extends JobSettingsCore {
  bootstrap: BootstrapSettings;
  /** Run-config keys (dotted) shared by every variant: the DICE recipe of the arena. */
  run: Record<string, unknown>;
  eval: EvalSettings;
  /** Also run DICE with α = 0 (the length-exploitation check of paper Table 4). */
  alphaZero: boolean;
}

/** `npm start`: sized to finish in ≤ 15 minutes on 2 cores, first run (bootstrap) included. */
export const DEFAULT_MAIN_JOB: MainJobSettings = {
  bootstrap: DEFAULT_BOOTSTRAP,
  run: {
    rounds: 2,
    // K = 8: as good as K = 16 here (seed 1: DICE it2 LC 44.2 vs 44.0) in half the sampling time.
    'sampling.k': 8,
    'sampling.temperature': 0.7,
    'sampling.topP': 0.9,
    'sampling.maxNewTokens': 32,
    'sampling.chatTemplate': false,
    'reward.beta': 0.1,
    // γ tuned as the paper does (per backbone: 0.5 Zephyr, 0.1 Llama-3), over {0.5, 0.75, 0.9} on seeds 1–3:
    // DICE it2 − offline DPO it2 averaged −0.6, +0.2, +0.0 LC; DICE it2 − base 6.3, 7.1, 6.9.
    'replay.gamma': 0.75,
    'train.steps': 40,
    'train.batch': 32,
    'train.lr': 5e-5,
    'train.warmupSteps': 5,
  },
  eval: { samplesPerPrompt: 4, temperature: 0.7, topP: 0.9, maxNewTokens: 32 },
  alphaZero: true,
};

/** Tiny settings for the test suite: the same pipeline in well under a minute. */
export const TINY_MAIN_JOB: MainJobSettings = {
  bootstrap: {
    seed: 3,
    threads: 1,
    arena: { families: ['upper', 'count'], sftTasks: 24, sftPerTask: 1, preferenceTasks: 16, evalTasks: 8 },
    judge: { ...DEFAULT_BOOTSTRAP.judge },
    policies: DEFAULT_BOOTSTRAP.policies,
    model: { hiddenSize: 32, intermediateSize: 64, numLayers: 1, numHeads: 2, numKvHeads: 1 },
    sft: { steps: 6, batch: 8, lr: 3e-3, warmupSteps: 1 },
    dpo: { steps: 3, batch: 8, lr: 1e-3, warmupSteps: 1, beta: 0.1 },
  },
  run: {
    rounds: 2,
    'sampling.k': 4,
    'sampling.maxNewTokens': 20,
    'sampling.chatTemplate': false,
    'filters.dropTruncated': false,
    'replay.gamma': 0.5,
    'train.steps': 2,
    'train.batch': 4,
    'train.lr': 1e-3,
    'train.warmupSteps': 1,
  },
  eval: { samplesPerPrompt: 2, temperature: 0.7, topP: 0.9, maxNewTokens: 20 },
  alphaZero: true,
};

export const MAIN_JOB_PRESETS: Record<string, MainJobSettings> = { default: DEFAULT_MAIN_JOB, tiny: TINY_MAIN_JOB };

export interface Variant {
  /** Topic namespace and folder name. */
  name: string;
  /** Table label, e.g. "DICE" → "DICE it1". */
  label: string;
  overrides: Record<string, unknown>;
}

export const DICE_VARIANT: Variant = { name: 'dice', label: 'DICE', overrides: {} };
export const OFFLINE_DPO_VARIANT: Variant = { name: 'offline-dpo', label: 'Offline DPO', overrides: { method: 'offline-dpo' } };
export const ALPHA_ZERO_VARIANT: Variant = { name: 'dice-alpha0', label: 'DICE α=0', overrides: { 'alpha.mode': 'fixed', 'alpha.value': 0 } };

export interface AlphaWindowReport {
  round: number;
  windowId: number;
  alpha: number;
  groups: number;
  before: SummaryStats;
  after: SummaryStats;
  /** Shared-edge histograms of |y_w| − |y_l| at α = 0 and at the chosen α (paper Fig. 2). */
  histogram: { edges: number[]; before: number[]; after: number[] };
  /** |mean(|y_w| − |y_l|)| as a step function of α on [0, 4α*], downsampled (paper Fig. 4); null for a fixed α. */
  landscape: Array<[number, number]> | null;
}

export interface TrainPoint {
  round: number;
  step: number;
  loss: number;
  rewardAccuracy: number;
  margin: number;
}

/** What round t produced: v_t, the health gate's decision on it, its health record (a run with a health stage). */
export interface TrainedVersion {
  round: number;
  version: number;
  parentVersion: number;
  location: string;
  sha256: string;
  /** True without a health stage (every version is used). */
  promoted: boolean;
  reasons: string[];
  health: HealthRecord | null;
}

export interface VariantRun {
  variant: Variant;
  config: RunConfig;
  /**
   * The model in use after iteration t (t = 1..R): v_t, or with a health gate the last promoted version
   * (π_θ(0) when none was), so a rejected version is never evaluated as an iteration.
   */
  checkpoints: string[];
  /** Every version trained, rejected ones included (for their health and their evaluation). */
  versions: TrainedVersion[];
  alpha: AlphaWindowReport[];
  train: TrainPoint[];
  rounds: Array<{ round: number; generatedPairs: number; offlinePairs: number; seconds: Record<string, number> }>;
  seconds: number;
}

export interface TableRow {
  model: string;
  /** Testbed-specific columns (e.g. IFEval accuracies and their s.e.), printed after the common ones. */
  extra?: Record<string, number>;
  variant: string;
  iteration: number;
  lcWinRate: number;
  /** Standard error of lcWinRate: prompt-level bootstrap (see bootstrapLcWinRates). */
  lcStdErr: number;
  winRate: number;
  avgLength: number;
  meanQuality: number;
  n: number;
}

/** LC of model a minus model b with its paired-bootstrap standard error. */
export interface LcComparison {
  a: string;
  b: string;
  diff: number;
  stdErr: number;
}

export interface Check {
  name: string;
  pass: boolean;
  detail: string;
}

export interface MainJobResult {
  settings: JobSettingsCore;
  /** Report heading and extra Markdown sections (after Table 1); the arena's when absent. */
  title?: string;
  sections?: string[];
  bootstrap: Pick<BootstrapResult, 'dir' | 'settingsHash' | 'cached' | 'seconds' | 'history'>;
  table: TableRow[];
  runs: VariantRun[];
  agreement: { pairs: number; vanilla: AgreementResult; shaped: AgreementResult; alpha: number } | null;
  checks: Check[];
  /** Paired-bootstrap LC differences the checks read: DICE it2 − base, DICE it2 − offline DPO it2. */
  comparisons: LcComparison[];
  seconds: { bootstrap: number; runs: Record<string, number>; eval: number; total: number };
  /** CPU seconds of the whole process (worker threads included): the quiet-machine estimate. */
  cpuSeconds: number;
  evalReferenceLength: number;
}

export interface MainJobOptions {
  settings: MainJobSettings;
  /** .dice/testbed: bootstrap caches. */
  cacheRoot: string;
  /** Run folder (bus + checkpoints); emptied at the start so every run is a fresh, seeded one. */
  workDir: string;
  log: Logger;
  /** Overrides the seed of everything (bootstrap and runs). */
  seed?: number;
  threads?: number;
}

/** The run config of a variant: arena recipe + variant overrides, validated by the schema. */
export function variantConfig(settings: JobSettingsCore, variant: Variant): RunConfig {
  return loadRunConfig(undefined, { seed: settings.bootstrap.seed, threads: settings.bootstrap.threads, ...settings.run, ...variant.overrides });
}

export function withSeedAndThreads<S extends JobSettingsCore>(settings: S, seed?: number, threads?: number): S {
  const s = structuredClone(settings);
  if (seed !== undefined) s.bootstrap.seed = seed;
  if (threads !== undefined) s.bootstrap.threads = threads;
  return s;
}

export async function runMainJob(options: MainJobOptions): Promise<MainJobResult> {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const settings = withSeedAndThreads(options.settings, options.seed, options.threads);
  const log = options.log;
  const phases = settings.alphaZero ? 5 : 4;
  let phase = 0;
  const announce = (what: string) => log.info(`[${++phase}/${phases}] ${what}`);

  announce('bootstrap: arena data, SFT π_ref(0) from scratch, DPO π_θ(0) on D_offline');
  const t0 = performance.now();
  const boot = await bootstrap(settings.bootstrap, { cacheRoot: options.cacheRoot, log });
  const bootstrapSeconds = (performance.now() - t0) / 1000;

  const workDir = resolve(options.workDir);
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const bus = await openBus(`embedded:${join(workDir, 'bus.db')}`);
  const runs: VariantRun[] = [];
  let agreement: MainJobResult['agreement'] = null;
  try {
    const variants = [DICE_VARIANT, OFFLINE_DPO_VARIANT, ...(settings.alphaZero ? [ALPHA_ZERO_VARIANT] : [])];
    for (const v of variants) {
      announce(`${v.label}: ${variantConfig(settings, v).rounds} ${v.name === 'offline-dpo' ? 'iterations' : 'rounds'}`);
      runs.push(await runVariant({ bus, boot, settings, variant: v, workDir, log }));
    }
    agreement = await implicitRewardAgreement(bus, DICE_VARIANT.name, boot.tasks.preference, quality, settings, runs[0]);
  } finally {
    await bus.close();
  }

  announce('evaluation on the held-out set (judge vs reference answers)');
  const t1 = performance.now();
  const models: Array<{ model: string; variant: string; iteration: number; dir: string }> = [
    { model: 'Base (π_θ(0))', variant: 'base', iteration: 0, dir: boot.policyDir },
  ];
  for (const r of runs) r.checkpoints.forEach((dir, i) => models.push({ model: `${r.variant.label} it${i + 1}`, variant: r.variant.name, iteration: i + 1, dir }));
  const { rows, referenceLength, compare } = await evaluateModels(models, boot.tasks.eval, settings, log);
  const evalSeconds = (performance.now() - t1) / 1000;
  const ordered = orderTable(rows);
  const find = (variant: string, it: number) => rows.find((x) => x.variant === variant && x.iteration === it);
  const dice2 = find(DICE_VARIANT.name, 2); // the iteration the checks read
  const comparisons = dice2 ? [find('base', 0), find(OFFLINE_DPO_VARIANT.name, 2)].filter((x) => x !== undefined).map((b) => compare(dice2, b)) : [];

  const cpu = process.cpuUsage(cpu0);
  const result: MainJobResult = {
    settings,
    bootstrap: { dir: boot.dir, settingsHash: boot.settingsHash, cached: boot.cached, seconds: boot.seconds, history: boot.history },
    table: ordered,
    runs,
    agreement,
    checks: [],
    comparisons,
    seconds: { bootstrap: bootstrapSeconds, runs: Object.fromEntries(runs.map((r) => [r.variant.name, r.seconds])), eval: evalSeconds, total: (performance.now() - started) / 1000 },
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    evalReferenceLength: referenceLength,
  };
  result.checks = phenomenaChecks(result);
  return result;
}

/** Paper Table 1 order: Base, Offline DPO it1..R, DICE it1..R, then any other variant. */
function orderTable(rows: TableRow[]): TableRow[] {
  const rank = (v: string) => (v === 'base' ? 0 : v === OFFLINE_DPO_VARIANT.name ? 1 : v === DICE_VARIANT.name ? 2 : 3);
  return [...rows].sort((a, b) => rank(a.variant) - rank(b.variant) || (a.variant < b.variant ? -1 : a.variant > b.variant ? 1 : 0) || a.iteration - b.iteration);
}

export interface RunVariantInputs {
  bus: Bus;
  boot: Pick<BootstrapResult, 'policyDir' | 'refDir' | 'promptsFile' | 'offlineFile'>;
  settings: JobSettingsCore;
  variant: Variant;
  workDir: string;
  log: Logger;
}

/** One `dice run` of a variant on the shared bus (its own namespace), with what the report needs. */
export async function runVariant(inputs: RunVariantInputs): Promise<VariantRun> {
  const { bus, boot, settings, variant } = inputs;
  const config = variantConfig(settings, variant);
  const t0 = performance.now();
  const metrics = new MetricsEmitter(bus, variant.name);
  const outDir = join(inputs.workDir, variant.name);
  const result = await runDice({
    bus,
    namespace: variant.name,
    config,
    policyDir: boot.policyDir,
    refDir: boot.refDir,
    promptsFile: boot.promptsFile,
    offlineFile: config.replay.gamma > 0 ? boot.offlineFile : undefined,
    outDir,
    log: inputs.log.child({ run: variant.name }),
    metrics,
  });
  const events = await readWholeTopic(bus, topicName(variant.name, 'metrics'), metricsTopic);
  const train: TrainPoint[] = events
    .filter((e) => e.stage === 'train' && e.type === 'step')
    .map((e) => ({ round: Number(e.round), step: Number(e.step), loss: Number(e.loss), rewardAccuracy: Number(e.rewardAccuracy), margin: Number(e.margin) }))
    .sort((a, b) => a.round - b.round || a.step - b.step);
  // the health topic, not the round summaries: a resumed round's summary carries no health record
  const health = new Map((await readWholeTopic(bus, topicName(variant.name, 'health'), healthTopic)).map((h) => [h.version, h]));
  const versions: TrainedVersion[] = result.rounds.map((r) => ({
    round: r.round,
    version: r.checkpoint.version,
    parentVersion: r.versions.policy,
    location: r.checkpoint.location,
    sha256: r.checkpoint.sha256,
    promoted: r.checkpoint.gate?.promoted ?? true,
    reasons: r.checkpoint.gate?.reasons ?? [],
    health: health.get(r.checkpoint.version) ?? null,
  }));
  const rejected = new Set(versions.filter((v) => !v.promoted).map((v) => v.version));
  const locationOf = (version: number) => (version === 0 ? resolve(boot.policyDir) : versions.find((v) => v.version === version)!.location);
  return {
    variant,
    config,
    checkpoints: versions.map((v) => locationOf(lastPromoted(v.round + 1, rejected))),
    versions,
    alpha: result.rounds.flatMap((r) => alphaReports(r)),
    train,
    rounds: result.rounds.map((r) => ({ round: r.round, generatedPairs: r.generatedPairs, offlinePairs: r.offlinePairs, seconds: r.seconds })),
    seconds: (performance.now() - t0) / 1000,
  };
}

function alphaReports(round: RoundSummary): AlphaWindowReport[] {
  return round.windows.flatMap((w) => {
    if (!w.lengths) return [];
    const before = w.lengths.before.diffs;
    const after = w.lengths.after.diffs;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of [...before, ...after]) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const edges = histogram(before, { bins: 24, min: lo, max: hi }).edges;
    const landscape = w.solution ? landscapeNear(w.solution.landscape, w.solution.alpha) : null;
    return [
      {
        round: round.round,
        windowId: w.windowId,
        alpha: w.alpha,
        groups: before.length,
        before: w.lengths.before.stats,
        after: w.lengths.after.stats,
        histogram: {
          edges: Array.from(edges),
          before: Array.from(histogram(before, { bins: 24, min: lo, max: hi }).counts),
          after: Array.from(histogram(after, { bins: 24, min: lo, max: hi }).counts),
        },
        landscape,
      },
    ];
  });
}

/** |D(α)/G| on [0, 4α*] (the whole breakpoint range when α* = 0), downsampled to ≤ 400 steps: Fig. 4's view. */
function landscapeNear(landscape: { alphas: Float64Array; meanDiffs: Float64Array }, alphaStar: number): Array<[number, number]> {
  const all = Array.from(landscape.alphas, (a, j): [number, number] => [a, Math.abs(landscape.meanDiffs[j])]);
  if (!(alphaStar > 0)) return downsample(all, 400, alphaStar);
  const xMax = 4 * alphaStar;
  const kept = all.filter(([a]) => a <= xMax);
  // the step holding at xMax, so the curve reaches the right edge
  const last = all.filter(([a]) => a <= xMax).at(-1);
  if (last && last[0] < xMax) kept.push([xMax, last[1]]);
  return downsample(kept, 400, alphaStar);
}

/**
 * Paper Table 5 in the arena: pairs of round-1 samples (two distinct responses of one prompt), the
 * judge's stochastic label vs the implicit reward's preference (vanilla and length-shaped at α*).
 */
export async function implicitRewardAgreement<T extends { id: string }>(
  bus: Bus,
  namespace: string,
  promptTasks: readonly T[],
  qualityOf: QualityFn<T>,
  settings: JobSettingsCore,
  dice: VariantRun,
): Promise<MainJobResult['agreement']> {
  const tasks = new Map(promptTasks.map((t) => [t.id, t]));
  const groups: ScoredGroup[] = (await readWholeTopic(bus, topicName(namespace, 'scored'), scoredTopic))
    .filter((g) => g.round === 1)
    .sort((a, b) => (a.promptId < b.promptId ? -1 : a.promptId > b.promptId ? 1 : 0));
  const alpha = dice.alpha.find((w) => w.round === 1)?.alpha ?? 0;
  const vanilla: AgreementItem[] = [];
  const shaped: AgreementItem[] = [];
  for (const g of groups) {
    const task = tasks.get(g.promptId);
    if (!task || g.responses.length < 2) continue;
    const rng = new Rng(deriveSeed(settings.bootstrap.seed, 'agreement', g.promptId));
    const i = rng.int(g.responses.length);
    let j = rng.int(g.responses.length - 1);
    if (j >= i) j++;
    const a = g.responses[i];
    const b = g.responses[j];
    if (a.text === b.text) continue;
    const pA = judgeProbability(task, a.text, b.text, settings.bootstrap.judge, qualityOf);
    const aWins = rng.next() < pA;
    vanilla.push({ rewardA: a.reward, rewardB: b.reward, judgeProbA: pA, aWins });
    shaped.push({ rewardA: a.reward - alpha * a.charLength, rewardB: b.reward - alpha * b.charLength, judgeProbA: pA, aWins });
  }
  if (vanilla.length === 0) return null;
  return { pairs: vanilla.length, vanilla: rewardJudgeAgreement(vanilla), shaped: rewardJudgeAgreement(shaped), alpha };
}

export interface ModelToEvaluate {
  model: string;
  variant: string;
  iteration: number;
  dir: string;
}

/** The arena's evaluation: its held-out tasks against its reference answers. */
export function evaluateModels(
  models: ModelToEvaluate[],
  evalTasks: ArenaTask[],
  settings: MainJobSettings,
  log: Logger,
  options: Pick<EvalSet<ArenaTask>, 'cacheDir'> = {},
): ReturnType<typeof evaluateModelsOn<ArenaTask>> {
  const seed = settings.bootstrap.seed;
  const references = evalTasks.map((t) => referenceResponse(t, deriveSeed(seed, 'reference')));
  return evaluateModelsOn(models, { tasks: evalTasks, references, quality, chat: false, cacheDir: options.cacheDir }, settings, log);
}

/** A testbed's evaluation set: tasks, one reference answer each, the quality truth, chat rendering. */
export interface EvalSet<T extends { id: string; prompt: string }> {
  tasks: readonly T[];
  references: readonly string[];
  quality: QualityFn<T>;
  chat: boolean;
  /** Folds the eval split's name into the sampling seeds (one job evaluating two splits draws them independently). */
  name?: string;
  /** Keeps each model's responses here (one JSON file per model label), so an interrupted job resumes its evaluation. */
  cacheDir?: string;
}

/**
 * Samples every model on the eval prompts (same seeds for all) and judges them against the references.
 * Also returns each model's judged items (same order for every model), for testbed-specific metrics.
 */
export async function evaluateModelsOn<T extends { id: string; prompt: string }>(
  models: ModelToEvaluate[],
  set: EvalSet<T>,
  settings: JobSettingsCore,
  log: Logger,
): Promise<{ rows: TableRow[]; referenceLength: number; compare: (a: TableRow, b: TableRow) => LcComparison; items: EvalItem<T>[][]; promptOf: number[] }> {
  const seed = settings.bootstrap.seed;
  const evalTasks = set.tasks;
  const references = set.references;
  if (references.length !== evalTasks.length) throw new Error(`evaluateModels: ${evalTasks.length} tasks but ${references.length} references`);
  const allItems: EvalItem<T>[][] = [];
  const rows: TableRow[] = [];
  const judged: EvalResult[] = [];
  const promptOf: number[] = [];
  const progress = new Progress('evaluate', models.length);
  let referenceLength = 0;
  try {
    for (const m of models) {
      const cacheFile = set.cacheDir === undefined ? undefined : join(set.cacheDir, `${m.variant}-it${m.iteration}.json`);
      const cached = cacheFile && existsSync(cacheFile) ? (JSON.parse(readFileSync(cacheFile, 'utf8')) as { dir: string; responses: string[]; promptOf: number[] }) : undefined;
      const items: EvalItem<T>[] = [];
      promptOf.length = 0;
      if (cached && cached.dir === resolve(m.dir) && cached.promptOf.every((p) => p < evalTasks.length)) {
        cached.responses.forEach((response, i) => {
          items.push({ task: evalTasks[cached.promptOf[i]], response, reference: references[cached.promptOf[i]] });
          promptOf.push(cached.promptOf[i]);
        });
      } else {
        const sampler = await Sampler.open({ modelDir: m.dir, threads: settings.bootstrap.threads });
        try {
          for (let start = 0; start < evalTasks.length; start += 32) {
            const chunk = evalTasks.slice(start, start + 32);
            const results = await sampler.generate(
              chunk.map((t, i) => ({
                promptId: t.id,
                prompt: t.prompt,
                chat: set.chat,
                k: settings.eval.samplesPerPrompt,
                seed: set.name === undefined ? deriveSeed(seed, 'eval', start + i) : deriveSeed(seed, 'eval', set.name, start + i),
              })),
              { temperature: settings.eval.temperature, topP: settings.eval.topP, maxNewTokens: settings.eval.maxNewTokens },
            );
            results.forEach((r, i) => {
              if (r.error) throw new Error(`evaluation of ${m.model}: prompt ${r.promptId}: ${r.error}`);
              for (const s of r.samples) {
                items.push({ task: chunk[i], response: s.text ?? '', reference: references[start + i] });
                promptOf.push(start + i);
              }
            });
          }
        } finally {
          await sampler.close();
        }
        if (cacheFile) {
          mkdirSync(dirname(cacheFile), { recursive: true });
          writeFileSync(`${cacheFile}.tmp`, JSON.stringify({ dir: resolve(m.dir), responses: items.map((it) => it.response), promptOf }));
          renameSync(`${cacheFile}.tmp`, cacheFile);
        }
      }
      const e = evaluateResponses(items, { judge: settings.bootstrap.judge, quality: set.quality });
      judged.push(e);
      allItems.push(items);
      referenceLength = e.avgReferenceLength;
      rows.push({ model: m.model, variant: m.variant, iteration: m.iteration, lcWinRate: e.lcWinRate, lcStdErr: NaN, winRate: e.winRate, avgLength: e.avgLength, meanQuality: e.meanQuality, n: e.n });
      progress.tick(1, m.model);
      log.info('evaluated', { model: m.model, lc: round2(e.lcWinRate), wr: round2(e.winRate), avgLength: round2(e.avgLength), quality: round2(e.meanQuality) });
    }
  } finally {
    progress.finish();
  }
  // Every model answered the same prompts with the same samples per prompt, in the same item order.
  const draws = bootstrapLcWinRates(judged, promptOf, { seed });
  rows.forEach((r, k) => (r.lcStdErr = summarize(draws[k]).std));
  const compare = (a: TableRow, b: TableRow): LcComparison => {
    const da = draws[rows.indexOf(a)];
    const db = draws[rows.indexOf(b)];
    if (!da || !db) throw new Error(`compare: ${a.model} or ${b.model} was not evaluated here`);
    return { a: a.model, b: b.model, diff: a.lcWinRate - b.lcWinRate, stdErr: summarize(da.map((x, i) => x - db[i])).std };
  };
  return { rows, referenceLength, compare, items: allItems, promptOf: [...promptOf] };
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}

/** The checks of the paper's phenomena, evaluated on this run's numbers. */
export function phenomenaChecks(r: Pick<MainJobResult, 'table' | 'runs'> & Partial<Pick<MainJobResult, 'comparisons'>>): Check[] {
  const checks: Check[] = [];
  // "(paired bootstrap s.e. x)" for a difference the run measured, so a reader sees whether it is noise.
  const se = (a: TableRow, b: TableRow) => {
    const c = r.comparisons?.find((x) => x.a === a.model && x.b === b.model);
    return c ? `, paired bootstrap s.e. ${c.stdErr.toFixed(1)}` : '';
  };
  const row = (variant: string, it: number) => r.table.find((x) => x.variant === variant && x.iteration === it);
  const dice = r.runs.find((x) => x.variant.name === DICE_VARIANT.name);
  const first = dice?.alpha.find((w) => w.round === 1);
  if (first) {
    const b = first.before;
    const se = b.std / Math.sqrt(Math.max(1, b.count));
    checks.push({
      name: 'vanilla implicit rewards prefer longer responses (mean |y_w| − |y_l| > 0 by > 2 s.e.)',
      pass: b.mean > 2 * se,
      detail: `round 1: mean ${b.mean.toFixed(2)} chars, s.e. ${se.toFixed(2)}, ${b.count} pairs`,
    });
    const ratio = Math.abs(first.after.mean) / Math.max(1e-12, Math.abs(b.mean));
    checks.push({
      name: 'α* brings the mean length difference within ±5% of its α = 0 magnitude',
      pass: ratio <= 0.05,
      detail: `round 1: α* = ${first.alpha.toPrecision(4)}, mean ${b.mean.toFixed(2)} → ${first.after.mean.toFixed(2)} (${(100 * ratio).toFixed(1)}%)`,
    });
  }
  const base = row('base', 0);
  const dice2 = row(DICE_VARIANT.name, 2);
  const off2 = row(OFFLINE_DPO_VARIANT.name, 2);
  if (base && dice2) {
    checks.push({
      name: 'DICE it2 LC win rate ≥ base + 8 points',
      pass: dice2.lcWinRate >= base.lcWinRate + 8,
      detail: `base ${base.lcWinRate.toFixed(1)}, DICE it2 ${dice2.lcWinRate.toFixed(1)} (${signed(dice2.lcWinRate - base.lcWinRate)}${se(dice2, base)})`,
    });
  }
  if (off2 && dice2) {
    checks.push({
      name: 'DICE it2 LC win rate above offline DPO it2',
      pass: dice2.lcWinRate > off2.lcWinRate,
      detail: `offline DPO it2 ${off2.lcWinRate.toFixed(1)}, DICE it2 ${dice2.lcWinRate.toFixed(1)} (${signed(dice2.lcWinRate - off2.lcWinRate)}${se(dice2, off2)})`,
    });
  }
  const zero = r.table.filter((x) => x.variant === ALPHA_ZERO_VARIANT.name);
  if (zero.length > 0) {
    const last = zero[zero.length - 1];
    const star = row(DICE_VARIANT.name, last.iteration);
    if (star) {
      checks.push({
        name: 'α = 0 gives longer responses than α*',
        pass: last.avgLength > star.avgLength,
        detail: `it${last.iteration}: α = 0 ${last.avgLength.toFixed(1)} chars, α* ${star.avgLength.toFixed(1)} chars`,
      });
    }
  }
  return checks;
}

function signed(v: number): string {
  return `${v >= 0 ? '+' : ''}${v.toFixed(1)}`;
}
