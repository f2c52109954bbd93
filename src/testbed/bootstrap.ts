/**
 * The arena's bootstrap, the miniature of the paper's starting point (Zephyr: an SFT model, then DPO
 * on UltraFeedback judged by GPT-4):
 *   1. arena splits: SFT tasks, preference tasks (D_offline and the DICE prompt stream) and a held-out
 *      eval set (makeArenaSplits);
 *   2. behaviour policies of mixed quality write SFT data and D_offline, labelled by the length-biased
 *      judge (offline.ts);
 *   3. a small Llama-shaped model (bootstrap-model.ts) is trained FROM SCRATCH by our trainer with the
 *      SFT loss → π_ref(0);
 *   4. DPO on D_offline from π_ref(0) with reference π_ref(0) → π_θ(0), the "DPO-tuned base model".
 * Everything is seeded, and the result is cached under <cacheRoot>/<hash of the settings>/ (built in
 * a temporary folder and renamed, so an interrupted bootstrap never leaves a half-written cache).
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { verifyCheckpoint } from '../model/checkpoint.ts';
import { initWeights } from '../model/init.ts';
import { saveModel } from '../model/load.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { Trainer, type PreferencePair, type SftExample as TokenSftExample, type StepMetrics } from '../engine/trainer.ts';
import { preferenceRows } from '../engine/trainer-batch.ts';
import { trainSteps } from '../engine/train-loop.ts';
import { toJsonLine } from '../io/records-file.ts';
import type { Logger } from '../util/log.ts';
import { Progress } from '../util/log.ts';
import { datasetBatcher } from '../util/epoch-batcher.ts';
import { deriveSeed } from '../util/random.ts';
import { arenaModelConfig, type ArenaShape } from './bootstrap-model.ts';
import { DEFAULT_JUDGE, type JudgeOptions } from './judge.ts';
import { makeOfflinePairs, makeSftExamples, type OfflinePair } from './offline.ts';
import type { PolicySpec } from './policies.ts';
import { makeArenaSplits, type ArenaTask, type TaskFamily } from './tasks.ts';

/** Bump when the recipe changes in a way the settings do not show (invalidates every cache). */
export const BOOTSTRAP_RECIPE = 4;

export interface TrainSettings {
  steps: number;
  batch: number;
  lr: number;
  warmupSteps: number;
}

export interface BootstrapSettings {
  seed: number;
  /** onnxruntime intra-op threads (fixed: results repeat exactly only with the same count). */
  threads: number;
  arena: {
    families: TaskFamily[];
    /** Tasks whose behaviour-policy responses make the SFT data. */
    sftTasks: number;
    /** SFT responses per SFT task (each from a freshly drawn policy). */
    sftPerTask: number;
    /** Tasks of D_offline; their prompts are also DICE's prompt stream (as UltraFeedback's are in the paper). */
    preferenceTasks: number;
    /** Held-out evaluation tasks (never trained on). */
    evalTasks: number;
  };
  judge: JudgeOptions;
  /** Behaviour policies of the SFT data and D_offline (drawn uniformly per response). */
  policies: PolicySpec[];
  model: ArenaShape;
  sft: TrainSettings;
  dpo: TrainSettings & { beta: number };
  /**
   * Optional NLL on D_offline's chosen responses after DPO (the negative-log-likelihood term of RPO,
   * Pang et al. 2024, run as a second stage). It keeps a strongly DPO-tuned π_θ(0) from spreading mass
   * onto answers π_ref(0) finds very unlikely (which the implicit reward would rank first), but in the
   * arena it also trains π_θ(0) almost to its ceiling, leaving DICE nothing to find: off by default.
   */
  chosenNll?: TrainSettings;
}

/**
 * The arena's behaviour policies: experts mostly right, novices mostly wrong in the systematic ways of
 * wrongAnswer() (an unreversed copy, a lower-case copy, a count off by 2–4) and with near misses of
 * the kind the model makes itself (partialAnswer: a miscopied letter, a count off by one), each terse
 * or chatty. Systematic mistakes are modes a small model imitates and can be talked out of; quality
 * and length stay independent, so a length preference can only come from the judge's labels.
 */
export const ARENA_POLICIES: PolicySpec[] = [
  { name: 'expert-terse', pCorrect: 0.9, pPartial: 0.05, filler: [0.8, 0.15, 0.05] },
  { name: 'expert-chatty', pCorrect: 0.9, pPartial: 0.05, filler: [0.05, 0.25, 0.7] },
  { name: 'novice-terse', pCorrect: 0.25, pPartial: 0.1, pNoAnswer: 0.05, filler: [0.8, 0.15, 0.05] },
  { name: 'novice-chatty', pCorrect: 0.25, pPartial: 0.1, pNoAnswer: 0.05, filler: [0.05, 0.25, 0.7] },
];

/** The full-size bootstrap of `npm start` (a few minutes of CPU on first run). */
export const DEFAULT_BOOTSTRAP: BootstrapSettings = {
  seed: 1,
  threads: 1,
  // add and lookup need arithmetic / induction a model this small does not learn in minutes; reverse is
  // learnt only partly, and DPO's push toward upper case (from the upper family) leaks into its answers.
  arena: { families: ['upper', 'count'], sftTasks: 8000, sftPerTask: 1, preferenceTasks: 1200, evalTasks: 250 },
  judge: { ...DEFAULT_JUDGE },
  policies: ARENA_POLICIES,
  model: { hiddenSize: 96, intermediateSize: 256, numLayers: 3, numHeads: 4, numKvHeads: 2 },
  sft: { steps: 2000, batch: 32, lr: 2e-3, warmupSteps: 50 },
  // π_θ(0) is DPO-tuned only part of the way (30 steps, < 1 epoch of D_offline), as Zephyr is far from
  // GPT-4 Turbo: it still samples the lower-case-copy mode and wrong counts, its implicit reward ranks
  // them last (seed 1, 8 samples per prompt: upper-case task Q 0.68 on average, 0.93 for the top-ranked
  // sample; count task 0.66 vs 0.77-0.80), and DICE has room to improve. Trained further (120 steps) it
  // drops that mode, but its implicit reward then ranks degenerate answers first (top pick worse than
  // the average sample), and an NLL stage (chosenNll) saturates the upper-case task (Q 0.99).
  dpo: { steps: 30, batch: 32, lr: 3e-5, warmupSteps: 10, beta: 0.1 },
};

/** What every testbed's bootstrap leaves: π_ref(0), π_θ(0), the run's input files, and how it trained. */
export interface BootstrapOutputs {
  /** The cache folder of these settings. */
  dir: string;
  settingsHash: string;
  /** π_ref(0) and π_θ(0) (DPO on D_offline). */
  refDir: string;
  policyDir: string;
  /** DICE's prompts (JSONL promptId/prompt) and D_offline (JSONL pairId/prompt/chosen/rejected). */
  promptsFile: string;
  offlineFile: string;
  /** Per-step training metrics of the two bootstrap stages. */
  history: { sft: StepSummary[]; dpo: StepSummary[] };
  /** Seconds the bootstrap took when it was built (0 for the stages when cached). */
  seconds: { sft: number; dpo: number; total: number };
}

export interface BootstrapResult extends BootstrapOutputs {
  tasks: { sft: ArenaTask[]; preference: ArenaTask[]; eval: ArenaTask[] };
  cached: boolean;
}

export interface StepSummary {
  step: number;
  loss: number;
  rewardAccuracy: number;
  margin: number;
}

const DONE_FILE = 'bootstrap.json';

/** Stable hash of the settings (keys sorted) and the recipe version: the cache key. */
export function settingsHash(settings: BootstrapSettings): string {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canonical) : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])])) : v;
  return createHash('sha256').update(JSON.stringify({ recipe: BOOTSTRAP_RECIPE, settings: canonical(settings) })).digest('hex').slice(0, 16);
}

const SFT_DONE_FILE = 'sft.json';

/** The cache key of the SFT stage: everything but the judge and the DPO stage. */
export function sftSettingsHash(settings: BootstrapSettings): string {
  const { judge: _judge, dpo: _dpo, chosenNll: _nll, ...rest } = settings;
  return settingsHash({ ...rest, judge: DEFAULT_JUDGE, dpo: { steps: 1, batch: 1, lr: 1, warmupSteps: 0, beta: 1 } });
}

/** The arena's tasks of these settings, split into SFT, preference and eval tasks. */
export function bootstrapTasks(settings: BootstrapSettings): BootstrapResult['tasks'] {
  const a = settings.arena;
  const { train, eval: evalTasks } = makeArenaSplits({ seed: settings.seed, trainSize: a.sftTasks + a.preferenceTasks, evalSize: a.evalTasks, families: a.families });
  return { sft: train.slice(0, a.sftTasks), preference: train.slice(a.sftTasks), eval: evalTasks };
}

/** Bootstraps (or loads from the cache) π_ref(0) and π_θ(0) for the settings. */
export async function bootstrap(settings: BootstrapSettings, options: { cacheRoot: string; log: Logger; rebuild?: boolean }): Promise<BootstrapResult> {
  validateSettings(settings);
  const hash = settingsHash(settings);
  const dir = resolve(options.cacheRoot, hash);
  const log = options.log.child({ stage: 'bootstrap' });
  if (!options.rebuild && existsSync(join(dir, DONE_FILE))) {
    const done = JSON.parse(readFileSync(join(dir, DONE_FILE), 'utf8')) as Omit<BootstrapResult, 'dir' | 'refDir' | 'policyDir' | 'promptsFile' | 'offlineFile' | 'tasks' | 'cached'>;
    const result = resultAt(dir, settings, done.history, done.seconds, true);
    // The weights must still be what was trained (a stray edit to the cache is refused, not used).
    verifyCheckpoint(result.refDir);
    verifyCheckpoint(result.policyDir);
    log.info('bootstrap cached', { dir, settingsHash: hash });
    return result;
  }
  const started = performance.now();
  const work = `${dir}.tmp-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  log.info('bootstrap starts', { dir, settingsHash: hash, model: settings.model, sftSteps: settings.sft.steps, dpoSteps: settings.dpo.steps });

  const tasks = bootstrapTasks(settings);
  const policies = settings.policies;
  const sftData = makeSftExamples(tasks.sft, { seed: deriveSeed(settings.seed, 'sft-data'), perTask: settings.arena.sftPerTask, policies });
  const offline = makeOfflinePairs(tasks.preference, { seed: deriveSeed(settings.seed, 'offline-data'), judge: settings.judge, policies });
  writeFileSync(join(work, 'settings.json'), `${JSON.stringify(settings, null, 2)}\n`);
  writeFileSync(join(work, 'tasks.json'), `${JSON.stringify(tasks)}\n`);
  writeFileSync(join(work, 'sft.jsonl'), sftData.map((e) => toJsonLine({ prompt: e.prompt, completion: e.response, policy: e.policy })).join('\n') + '\n');
  writeFileSync(join(work, 'offline.jsonl'), offline.map((p) => toJsonLine(offlineRecord(p))).join('\n') + '\n');
  writeFileSync(join(work, 'prompts.jsonl'), tasks.preference.map((t) => toJsonLine({ promptId: t.id, prompt: t.prompt })).join('\n') + '\n');
  log.info('arena data', { sftExamples: sftData.length, offlinePairs: offline.length, promptStream: tasks.preference.length, evalTasks: tasks.eval.length });

  const { config, tokenizer } = arenaModelConfig(settings.model);
  const initDir = join(work, 'init');
  saveModel(initDir, { config, weights: initWeights(config, { seed: deriveSeed(settings.seed, 'init') }), tokenizerFiles: tokenizer.files });

  // π_ref(0) depends on neither the judge nor the DPO stage: it has its own cache entry, so tuning those
  // does not retrain it.
  const t0 = performance.now();
  const sftCache = resolve(options.cacheRoot, `sft-${sftSettingsHash(settings)}`);
  let sftHistory: StepSummary[];
  if (!options.rebuild && existsSync(join(sftCache, SFT_DONE_FILE))) {
    verifyCheckpoint(join(sftCache, 'sft'));
    cpSync(join(sftCache, 'sft'), join(work, 'sft'), { recursive: true });
    sftHistory = (JSON.parse(readFileSync(join(sftCache, SFT_DONE_FILE), 'utf8')) as { history: StepSummary[] }).history;
    log.info('sft π_ref(0) cached', { dir: sftCache });
  } else {
    sftHistory = await trainSft(initDir, join(work, 'sft'), sftData.map((e) => encodeSft(tokenizer, e.prompt, e.response)), settings, log);
    const sftWork = `${sftCache}.tmp-${process.pid}`;
    rmSync(sftWork, { recursive: true, force: true });
    cpSync(join(work, 'sft'), join(sftWork, 'sft'), { recursive: true });
    writeFileSync(join(sftWork, SFT_DONE_FILE), `${JSON.stringify({ history: sftHistory })}\n`);
    rmSync(sftCache, { recursive: true, force: true });
    renameSync(sftWork, sftCache);
  }
  const sftSeconds = (performance.now() - t0) / 1000;
  rmSync(initDir, { recursive: true, force: true });

  const t1 = performance.now();
  const nll = settings.chosenNll;
  const dpoOut = nll ? join(work, 'dpo-only') : join(work, 'dpo');
  const dpoHistory = await trainOfflineDpo(join(work, 'sft'), dpoOut, offline.map((p) => encodePair(tokenizer, p)), settings, log);
  if (nll) {
    const chosen = offline.map((p) => encodeSft(tokenizer, p.prompt, p.chosen));
    await trainSft(dpoOut, join(work, 'dpo'), chosen, { ...settings, sft: nll }, log, { stage: 'chosen-nll', version: 'v0', parentVersion: 'ref0', referenceVersion: 'ref0' });
    rmSync(dpoOut, { recursive: true, force: true });
  }
  const dpoSeconds = (performance.now() - t1) / 1000;

  const seconds = { sft: sftSeconds, dpo: dpoSeconds, total: (performance.now() - started) / 1000 };
  writeFileSync(join(work, DONE_FILE), `${JSON.stringify({ settingsHash: hash, history: { sft: sftHistory, dpo: dpoHistory }, seconds })}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  log.info('bootstrap done', { dir, seconds: Number(seconds.total.toFixed(1)) });
  return resultAt(dir, settings, { sft: sftHistory, dpo: dpoHistory }, seconds, false);
}

function resultAt(dir: string, settings: BootstrapSettings, history: BootstrapResult['history'], seconds: BootstrapResult['seconds'], cached: boolean): BootstrapResult {
  const tasks = JSON.parse(readFileSync(join(dir, 'tasks.json'), 'utf8')) as BootstrapResult['tasks'];
  return {
    dir,
    settingsHash: settingsHash(settings),
    refDir: join(dir, 'sft'),
    policyDir: join(dir, 'dpo'),
    promptsFile: join(dir, 'prompts.jsonl'),
    offlineFile: join(dir, 'offline.jsonl'),
    tasks,
    history,
    seconds,
    cached,
  };
}

function offlineRecord(p: OfflinePair): Record<string, unknown> {
  return { pairId: `offline-${p.promptId}`, prompt: p.prompt, chosen: p.chosen, rejected: p.rejected, source: 'arena' };
}

/** Prompt with BOS, response + EOS: the sampler's and the replay stage's encoding without a chat template. */
export function encodeSft(tokenizer: Tokenizer, prompt: string, response: string): TokenSftExample {
  return { promptTokenIds: tokenizer.encode(prompt), completionTokenIds: [...tokenizer.encode(response, { addSpecialTokens: false }), eosOf(tokenizer)] };
}

function encodePair(tokenizer: Tokenizer, p: OfflinePair): Omit<PreferencePair, 'refChosenLogp' | 'refRejectedLogp'> {
  const eos = eosOf(tokenizer);
  return {
    promptTokenIds: tokenizer.encode(p.prompt),
    chosenTokenIds: [...tokenizer.encode(p.chosen, { addSpecialTokens: false }), eos],
    rejectedTokenIds: [...tokenizer.encode(p.rejected, { addSpecialTokens: false }), eos],
  };
}

function eosOf(tokenizer: Tokenizer): number {
  if (tokenizer.eosTokenId === null) throw new Error('arena tokenizer has no eos_token');
  return tokenizer.eosTokenId;
}

function summary(m: StepMetrics): StepSummary {
  return { step: m.step, loss: m.loss, rewardAccuracy: m.rewardAccuracy, margin: m.margin };
}

async function trainSft(
  fromDir: string,
  outDir: string,
  data: TokenSftExample[],
  settings: BootstrapSettings,
  log: Logger,
  meta: { stage: string; version: string; parentVersion?: string; referenceVersion?: string } = { stage: 'sft', version: 'ref0' },
): Promise<StepSummary[]> {
  const s = settings.sft;
  const trainer = await Trainer.open({ modelDir: fromDir }, { loss: 'sft', beta: 1, lr: s.lr, warmupSteps: s.warmupSteps, threads: settings.threads });
  const order = datasetBatcher(data.length, s.batch, deriveSeed(settings.seed, 'sft-order'));
  const progress = new Progress(meta.stage === 'sft' ? 'sft π_ref(0)' : `${meta.stage} π_θ(0)`, s.steps);
  let history: StepSummary[] = [];
  try {
    const steps = await trainSteps(trainer, s.steps, () => ({ kind: 'sft', examples: order.next().map((i) => data[i]) }), (m, step) => {
      progress.tick(1, `loss ${m.loss.toFixed(3)}`);
      if ((step + 1) % Math.max(1, Math.floor(s.steps / 10)) === 0) log.info(meta.stage, { step: m.step, of: s.steps, loss: Number(m.loss.toFixed(4)) });
    });
    history = steps.map(summary);
    const { stage, ...versions } = meta;
    await trainer.save(outDir, { ...versions, metrics: { stage, ...s, finalLoss: history[history.length - 1]?.loss ?? null } });
  } finally {
    progress.finish();
    await trainer.close();
  }
  return history;
}

/** DPO from refDir with reference refDir on tokenized pairs → π_θ(0) in outDir (also the chat testbed's). */
export async function trainOfflineDpo(
  refDir: string,
  outDir: string,
  pairs: Array<Omit<PreferencePair, 'refChosenLogp' | 'refRejectedLogp'>>,
  settings: { seed: number; threads: number; dpo: TrainSettings & { beta: number; microBatch?: number; logpChunk?: number } },
  log: Logger,
): Promise<StepSummary[]> {
  const s = settings.dpo;
  const trainer = await Trainer.open({ modelDir: refDir }, { loss: 'dpo', beta: s.beta, lr: s.lr, warmupSteps: s.warmupSteps, threads: settings.threads, microBatch: s.microBatch });
  let history: StepSummary[] = [];
  const progress = new Progress('dpo π_θ(0)', s.steps);
  try {
    // The policy starts at π_ref(0), so its log-probs before the first step are the reference's.
    const withRef: PreferencePair[] = [];
    // a real model's log-prob pass over 256 pairs would hold GBs of activations: it passes a smaller chunk
    const chunkSize = s.logpChunk ?? 256;
    for (let i = 0; i < pairs.length; i += chunkSize) {
      const chunk = pairs.slice(i, i + chunkSize).map((p) => ({ ...p, refChosenLogp: 0, refRejectedLogp: 0 }));
      const logps = await trainer.policyLogps(preferenceRows(chunk));
      chunk.forEach((p, j) => {
        p.refChosenLogp = logps[j];
        p.refRejectedLogp = logps[chunk.length + j];
      });
      withRef.push(...chunk);
    }
    const order = datasetBatcher(withRef.length, s.batch, deriveSeed(settings.seed, 'dpo-order'));
    const steps = await trainSteps(trainer, s.steps, () => ({ kind: 'preference', pairs: order.next().map((i) => withRef[i]) }), (m, step) => {
      progress.tick(1, `loss ${m.loss.toFixed(3)} acc ${m.rewardAccuracy.toFixed(2)}`);
      if ((step + 1) % Math.max(1, Math.floor(s.steps / 5)) === 0) {
        log.info('dpo', { step: m.step, of: s.steps, loss: Number(m.loss.toFixed(4)), rewardAccuracy: Number(m.rewardAccuracy.toFixed(3)) });
      }
    });
    history = steps.map(summary);
    await trainer.save(outDir, { version: 'v0', parentVersion: 'ref0', referenceVersion: 'ref0', metrics: { stage: 'offline-dpo', ...s, finalLoss: history[history.length - 1]?.loss ?? null } });
  } finally {
    progress.finish();
    await trainer.close();
  }
  return history;
}

function validateSettings(s: BootstrapSettings): void {
  const bad = (path: string, why: string) => {
    throw new Error(`bootstrap settings: ${path} ${why}`);
  };
  if (!Number.isInteger(s.seed) || s.seed < 0) bad('seed', `must be a non-negative integer, got ${s.seed}`);
  if (!Number.isInteger(s.threads) || s.threads < 1) bad('threads', `must be a positive integer, got ${s.threads}`);
  if (s.arena.families.length === 0) bad('arena.families', 'is empty');
  if (s.policies.length === 0) bad('policies', 'is empty');
  for (const k of ['sftTasks', 'sftPerTask', 'preferenceTasks', 'evalTasks'] as const) {
    if (!Number.isInteger(s.arena[k]) || s.arena[k] < 1) bad(`arena.${k}`, `must be a positive integer, got ${s.arena[k]}`);
  }
  for (const stage of ['sft', 'dpo', 'chosenNll'] as const) {
    const t = s[stage];
    if (!t) continue;
    if (!Number.isInteger(t.steps) || t.steps < 1) bad(`${stage}.steps`, `must be a positive integer, got ${t.steps}`);
    if (!Number.isInteger(t.batch) || t.batch < 1) bad(`${stage}.batch`, `must be a positive integer, got ${t.batch}`);
    if (!(t.lr > 0)) bad(`${stage}.lr`, `must be > 0, got ${t.lr}`);
  }
  if (!(s.dpo.beta > 0)) bad('dpo.beta', `must be > 0, got ${s.dpo.beta}`);
}
