import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate } from '../model/chat-template.ts';
import { MANIFEST_FILE, verifyCheckpoint } from '../model/checkpoint.ts';
import { readHfConfig } from '../model/hf-config.ts';
import { rootModelDir, tokenizerDirOf } from '../model/policy.ts';
import { Tokenizer } from '../model/tokenizer.ts';
import { checkProvider } from '../onnx/session.ts';
import { datasetBatcher } from '../util/epoch-batcher.ts';
import { deriveSeed } from '../util/random.ts';
import type { LoraConfig } from '../config/schema.ts';
import { Scorer } from '../engine/scorer.ts';
import { Trainer, type PreferencePair, type StepMetrics, type TrainBatch } from '../engine/trainer.ts';
import { ktoMismatchedRows, preferenceRows } from '../engine/trainer-batch.ts';
import { trainSteps } from '../engine/train-loop.ts';
import { applyRefLogpsFile, readPreferencePairs, readSftExamples, type TokenizedPair } from '../engine/trainer-data.ts';

/** The flags of `dice train` (src/cli/commands/train.ts). */
export interface TrainCliOptions {
  model: string;
  ref?: string;
  refLogps?: string;
  pairs: string;
  loss: 'dpo' | 'ipo' | 'hinge' | 'kto' | 'sft' | 'rdpo';
  beta: number;
  alpha: number;
  steps: number;
  batch: number;
  microBatch?: number;
  lr: number;
  warmup: number;
  weightDecay: number;
  maxGradNorm: number;
  out: string;
  seed: number;
  threads: number;
  provider: 'cpu' | 'webgpu' | 'cuda';
  chat?: boolean;
  version: string;
  json?: boolean;
  lora?: LoraConfig;
}

/** The work behind `dice train` (see src/cli/commands/train.ts). */
export async function runTrainCommand(opts: TrainCliOptions): Promise<void> {
  checkProvider(opts.provider);
  const isSft = opts.loss === 'sft';
  if (!isSft && opts.ref && opts.refLogps) throw new Error('give --ref or --ref-logps, not both');
  if (opts.loss === 'kto' && !opts.ref && !opts.lora) throw new Error("--loss kto needs --ref DIR (or --lora, whose reference is the base): KTO's reference point scores mismatched prompt/response pairs under the reference");
  const parentVersion = existsSync(join(opts.model, MANIFEST_FILE)) ? verifyCheckpoint(opts.model).version : null;
  const referenceVersion = opts.ref && existsSync(join(opts.ref, MANIFEST_FILE)) ? verifyCheckpoint(opts.ref).version : null;

  // --model may be a LoRA adapter directory: the config is its root model's
  const config = readHfConfig(join(rootModelDir(opts.model), 'config.json'));
  const tokenizerDir = tokenizerDirOf(opts.model);
  const tokenizer = Tokenizer.fromDir(tokenizerDir);
  const chatTemplate = ChatTemplate.fromTokenizerConfig(tokenizer.config, tokenizer.files.chatTemplateJinja, join(tokenizerDir, 'tokenizer_config.json'));
  const enc = { tokenizer, chatTemplate, eosTokenId: config.eosTokenIds[0] ?? null, chat: opts.chat ?? chatTemplate !== null };

  const log = (line: string) => process.stderr.write(`${line}\n`);
  let pairs: PreferencePair[] = [];
  let refMismatched: number[] = [];
  const sft = isSft ? await readSftExamples(opts.pairs, enc) : [];
  if (!isSft) {
    const tokenized: TokenizedPair[] = await readPreferencePairs(opts.pairs, enc);
    if (opts.refLogps) await applyRefLogpsFile(opts.refLogps, tokenized);
    if (opts.ref) {
      log(`scoring ${tokenized.length} pairs under the reference ${opts.ref}`);
      const scorer = await Scorer.open({ modelDir: opts.ref, threads: opts.threads });
      try {
        const rows = [
          ...tokenized.map((p) => ({ promptTokenIds: p.promptTokenIds, responseTokenIds: p.chosenTokenIds })),
          ...tokenized.map((p) => ({ promptTokenIds: p.promptTokenIds, responseTokenIds: p.rejectedTokenIds })),
        ];
        const scored = await scorer.score(rows);
        tokenized.forEach((p, i) => {
          p.refChosenLogp = scored[i].logProb;
          p.refRejectedLogp = scored[tokenized.length + i].logProb;
        });
      } finally {
        await scorer.close();
      }
    }
    pairs = tokenized as PreferencePair[];
  }

  const trainer = await Trainer.open(
    { modelDir: opts.model },
    {
      loss: opts.loss,
      beta: opts.beta,
      alpha: opts.alpha,
      lr: opts.lr,
      warmupSteps: opts.warmup,
      adamw: { weightDecay: opts.weightDecay, maxGradNorm: opts.maxGradNorm > 0 ? opts.maxGradNorm : null },
      microBatch: opts.microBatch,
      provider: opts.provider,
      threads: opts.threads,
      lora: opts.lora ? { config: opts.lora, seed: opts.seed } : undefined,
    },
  );
  // KTO's mismatched rows under the reference: a scorer of --ref, or a LoRA policy's base (adapter off)
  const refScorer = opts.loss === 'kto' && opts.ref ? await Scorer.open({ modelDir: opts.ref, threads: opts.threads }) : null;
  const scorer = refScorer ?? (opts.loss === 'kto' ? { score: async (rows: Array<{ promptTokenIds: number[]; responseTokenIds: number[] }>) => (await trainer.baseLogps(rows.map((r) => ({ prompt: r.promptTokenIds, response: r.responseTokenIds })))).map((logProb) => ({ logProb })) } : null);
  try {
    if (!isSft) await fillBaseReference(pairs, opts, trainer, log);
    const items: Array<PreferencePair | (typeof sft)[number]> = isSft ? sft : pairs;
    const order = datasetBatcher(items.length, opts.batch, deriveSeed(opts.seed, 'train-order'));
    const started = performance.now();
    const batchAt = async (): Promise<TrainBatch> => {
      const picked = order.next();
      if (isSft) return { kind: 'sft', examples: picked.map((i) => sft[i]) };
      const chosen = picked.map((i) => pairs[i]);
      if (scorer) {
        const rows = ktoMismatchedRows(chosen).map((r) => ({ promptTokenIds: r.prompt, responseTokenIds: r.response }));
        refMismatched = (await scorer.score(rows)).map((x) => x.logProb);
      }
      return { kind: 'preference', pairs: chosen, refMismatchedLogps: scorer ? refMismatched : undefined };
    };
    const history = await trainSteps(trainer, opts.steps, batchAt, (m) => {
      if (opts.json) console.log(JSON.stringify(m));
      else
        log(
          `step ${m.step}/${opts.steps}  loss ${m.loss.toFixed(4)}  ` +
            (isSft ? '' : `acc ${m.rewardAccuracy.toFixed(2)}  margin ${m.margin.toFixed(4)}  `) +
            `|g| ${m.gradNorm.toFixed(3)}  lr ${m.lr.toExponential(2)}  ${m.seconds.toFixed(2)}s`,
        );
    });
    const last = history[history.length - 1];
    const tail = history.slice(-Math.min(10, history.length));
    const mean = (f: (m: StepMetrics) => number) => tail.reduce((a, m) => a + f(m), 0) / tail.length;
    const manifest = await trainer.save(opts.out, {
      version: opts.version,
      parentVersion,
      referenceVersion,
      metrics: {
        loss: opts.loss,
        beta: opts.beta,
        lr: opts.lr,
        warmupSteps: opts.warmup,
        steps: last.step,
        batch: opts.batch,
        seed: opts.seed,
        threads: opts.threads,
        ...(opts.lora ? { lora: opts.lora } : {}),
        finalLoss: last.loss,
        meanLossLast10: mean((m) => m.loss),
        rewardAccuracyLast10: mean((m) => m.rewardAccuracy),
        marginLast10: mean((m) => m.margin),
        seconds: (performance.now() - started) / 1000,
      },
    });
    log(`wrote ${opts.out} (version ${manifest.version}, sha256 ${manifest.sha256.slice(0, 12)}…)`);
    if (opts.json) console.log(JSON.stringify({ checkpoint: opts.out, manifest }));
  } finally {
    await trainer.close();
    await refScorer?.close();
  }
}

/**
 * Pairs without reference log-probs: with --lora, the reference is the base (the trainer's frozen
 * weights with the adapter off) — scored by the trainer itself, no second copy of the model.
 */
async function fillBaseReference(pairs: PreferencePair[], opts: TrainCliOptions, trainer: Trainer, log: (line: string) => void): Promise<void> {
  const missing = pairs.filter((p) => p.refChosenLogp === undefined || p.refRejectedLogp === undefined);
  if (missing.length === 0) return;
  if (!opts.lora) {
    const p = missing[0] as PreferencePair & { location?: string };
    throw new Error(`${p.location ?? 'pair'}: no reference log-probs (give --ref DIR, --ref-logps FILE, or ref_chosen_logp/ref_rejected_logp in the record)`);
  }
  log(`scoring ${missing.length} pairs under the base (the LoRA policy's reference: adapter off)`);
  const logps = await trainer.baseLogps(preferenceRows(missing));
  missing.forEach((p, i) => {
    p.refChosenLogp = logps[i];
    p.refRejectedLogp = logps[missing.length + i];
  });
}
