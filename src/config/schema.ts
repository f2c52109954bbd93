import { readFileSync } from 'node:fs';
import { z } from 'zod';

/**
 * The one validated configuration of a DICE run. Defaults are the paper's (§5.1, Zephyr setting):
 * K=16, β=0.1, γ=0.5, 2 rounds, 300 steps of batch 32, constant LR with 50 warm-up steps, T=0.7,
 * top-p 0.9. Every key can be set by a JSON config file and overridden by CLI flags.
 */

const sampling = z
  .object({
    k: z.number().int().min(2).default(16),
    temperature: z.number().positive().default(0.7),
    topP: z.number().gt(0).max(1).default(0.9),
    /** 0 disables top-k. */
    topK: z.number().int().min(0).default(0),
    maxNewTokens: z.number().int().positive().default(512),
    /** Render prompts through the model's chat template when it has one. */
    chatTemplate: z.boolean().default(true),
    /**
     * Prompts per sampler call: their K samples decode together (promptsPerCall × K rows). `dice run`
     * cuts the round's prompt list into fixed chunks of this size, so results do not depend on timing.
     */
    promptsPerCall: z.number().int().min(1).default(4),
  })
  .strict();

const reward = z
  .object({
    /** β of the implicit reward (Eq. 4); also the DPO β of training unless train.beta is set. */
    beta: z.number().positive().default(0.1),
    /** |y| in Eq. 5: string length in characters (paper) or tokens. */
    lengthUnit: z.enum(['chars', 'tokens']).default('chars'),
  })
  .strict();

const alpha = z
  .object({
    /** optimal: α* of Eq. 6, found exactly; fixed: use `value`. */
    mode: z.enum(['optimal', 'fixed']).default('optimal'),
    value: z.number().min(0).default(0),
    /** Multiplies the chosen α (paper Table 4 ablates α*, 2α*). */
    multiplier: z.number().min(0).default(1),
    /** Upper bound of the α search. */
    max: z.number().positive().optional(),
    /** Scored groups per α* window; 0 = the whole round (paper). */
    window: z.number().int().min(0).default(0),
    /** Largest window held in memory; a round larger than this is split into windows of this size. */
    windowCap: z.number().int().positive().default(100_000),
  })
  .strict();

const filters = z
  .object({
    /** Drop responses that hit max new tokens without EOS (official code). */
    dropTruncated: z.boolean().default(true),
    minLength: z.number().int().min(0).default(1),
    maxLength: z.number().int().positive().default(1_000_000),
    /** Keep a prompt only if at least this fraction of its K responses survive. */
    minValidFraction: z.number().min(0).max(1).default(0.5),
  })
  .strict();

const replay = z
  .object({
    /** γ: fraction of each round's training set drawn from D_offline (Alg. 1 line 5). */
    gamma: z.number().min(0).max(1).default(0.5),
  })
  .strict();

/** The linear layers a LoRA adapter can target, by their short names (q → self_attn.q_proj, …). */
export const LORA_TARGETS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;

/**
 * `r=16,alpha=32,targets=q,k,v,o,gate,up,down` (the --lora flag, also accepted as the config value)
 * as the object the schema validates: malformed parts are kept under keys the schema refuses, so the
 * error names them.
 */
function loraSpecObject(text: string): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  let listKey: string | null = null;
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 0 && listKey === 'targets') (raw.targets as string[]).push(part.replace(/_proj$/, ''));
    else if (eq < 0) raw[`"${part}" (not key=value)`] = true;
    else {
      listKey = part.slice(0, eq);
      const value = part.slice(eq + 1);
      raw[listKey] = listKey === 'targets' ? [value.replace(/_proj$/, '')] : listKey === 'r' || listKey === 'alpha' || listKey === 'dropout' ? Number(value) : value;
    }
  }
  return raw;
}

/** LoRA (Hu et al. 2021) as PEFT defines it: ΔW = (alpha / r) · B · A, dropout 0. */
export const loraSchema = z.preprocess(
  (v) => (typeof v === 'string' ? loraSpecObject(v) : v),
  z
    .object({
      r: z.number().int().positive().max(4096),
      alpha: z.number().positive(),
      targets: z.array(z.enum(LORA_TARGETS)).min(1).refine((t) => new Set(t).size === t.length, 'targets must not repeat'),
      /** Only 0 (the adapters train without dropout). */
      dropout: z.literal(0, { error: 'only dropout 0 is supported' }).optional(),
    })
    .strict(),
);

export type LoraConfig = z.output<typeof loraSchema>;

const train = z
  .object({
    loss: z.enum(['dpo', 'ipo', 'hinge', 'kto']).default('dpo'),
    /** DPO β; defaults to reward.beta. */
    beta: z.number().positive().optional(),
    steps: z.number().int().positive().default(300),
    batch: z.number().int().positive().default(32),
    /** Micro-batch for gradient accumulation (0 = the whole batch at once). */
    microBatch: z.number().int().min(0).default(0),
    lr: z.number().positive().default(5e-7),
    warmupSteps: z.number().int().min(0).default(50),
    weightDecay: z.number().min(0).default(0),
    maxGradNorm: z.number().positive().default(1),
    /** Train a LoRA adapter on the round's starting policy (frozen) instead of all weights; null: full fine-tuning. */
    lora: loraSchema.nullable().default(null),
  })
  .strict();

const health = z
  .object({
    /**
     * Pairs of D_offline held out for the health stage's implicit-reward accuracy: never replayed.
     * Chosen deterministically (the smallest seeded hashes of their pairIds, src/dice/held-out.ts).
     */
    heldOutPairs: z.number().int().min(0).default(0),
    /**
     * Probe prompts: the prompts of the first held-out pairs (a fixed set, the same every round),
     * sampled by v_t and v_{t−1} for ranking consistency, length and KL. At most heldOutPairs.
     */
    probePrompts: z.number().int().min(0).default(0),
    /** Responses per probe prompt (a probe group: ranking consistency, length, KL). */
    probeSamples: z.number().int().min(2).default(4),
  })
  .strict();

/** What a rejected version changes for the next round (which starts again from the last promoted one). */
const onReject = z
  .object({
    /** Multiplies train.lr for each rejection since the last promoted version. */
    lrScale: z.number().positive().max(1).default(1),
    /** γ of the next round (more replay of D_offline); absent: unchanged. */
    gamma: z.number().min(0).max(1).optional(),
  })
  .strict();

/** The checkpoint gate (src/dice/health.ts:gate); a threshold left out is not checked. */
const gatePolicy = z
  .object({
    /** always-promote: the paper (every v_t is used); thresholds: reject a v_t that fails a check. */
    mode: z.enum(['always-promote', 'thresholds']).default('always-promote'),
    minRoundAccuracy: z.number().min(0).max(1).optional(),
    maxCumulativeAccuracyDrop: z.number().min(0).max(1).optional(),
    minRankingTau: z.number().min(-1).max(1).optional(),
    maxLengthGrowth: z.number().optional(),
    maxKl: z.number().optional(),
    onReject: onReject.default(() => onReject.parse({})),
  })
  .strict();

/** `dice serve` only (src/service/serve.ts). */
const serve = z
  .object({
    /**
     * Bounded staleness, in policy versions: 0 = strictly on-policy rounds (the paper; samplers wait
     * while a round trains). With s > 0 samplers go on sampling fresh prompts with v_{t−1} for rounds
     * t+1..t+s while round t trains; a group enters its round's α window if its sampling version is
     * at most s promoted versions behind the round's policy, else it is dropped and counted.
     */
    maxStaleness: z.number().int().min(0).max(8).default(0),
  })
  .strict();

export const runConfigSchema = z
  .object({
    seed: z.number().int().min(0).default(0),
    rounds: z.number().int().positive().default(2),
    /** Prompts per round (N); 0 = all prompts of the file, split evenly over the rounds. */
    promptsPerRound: z.number().int().min(0).default(0),
    /**
     * dice: Algorithm 1. offline-dpo: γ=1, reference fixed at π_ref(0). offline-dpo-new-ref: γ=1, reference = previous policy.
     */
    method: z.enum(['dice', 'offline-dpo', 'offline-dpo-new-ref']).default('dice'),
    /** Drop samples made by an older policy version (strictly on-policy). */
    strictOnPolicy: z.boolean().default(true),
    threads: z.number().int().positive().default(1),
    provider: z.enum(['cpu', 'webgpu', 'cuda']).default('cpu'),
    sampling: sampling.default(() => sampling.parse({})),
    reward: reward.default(() => reward.parse({})),
    alpha: alpha.default(() => alpha.parse({})),
    filters: filters.default(() => filters.parse({})),
    replay: replay.default(() => replay.parse({})),
    train: train.default(() => train.parse({})),
    health: health.default(() => health.parse({})),
    gate: gatePolicy.default(() => gatePolicy.parse({})),
    serve: serve.default(() => serve.parse({})),
  })
  .strict();

export type RunConfig = z.infer<typeof runConfigSchema>;

export class ConfigError extends Error {}

/** Validates a config object; the error lists every bad key by its dotted path. */
export function parseRunConfig(input: unknown, source = 'config'): RunConfig {
  const result = runConfigSchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new ConfigError(`invalid ${source}:\n${problems}`);
  }
  const { health, gate } = result.data;
  if (gate.mode === 'thresholds' && health.heldOutPairs === 0) {
    throw new ConfigError(`invalid ${source}:\n  gate.mode: thresholds, but the health stage has nothing to measure: set health.heldOutPairs (and health.probePrompts)`);
  }
  const probeChecks = (['minRankingTau', 'maxLengthGrowth', 'maxKl'] as const).filter((k) => gate[k] !== undefined);
  if (gate.mode === 'thresholds' && health.probePrompts === 0 && probeChecks.length > 0) {
    throw new ConfigError(`invalid ${source}:\n  gate.${probeChecks[0]}: it is measured on probe prompts, but health.probePrompts is 0`);
  }
  if (health.probePrompts > health.heldOutPairs) {
    throw new ConfigError(`invalid ${source}:\n  health.probePrompts: ${health.probePrompts} probe prompts need as many held-out pairs (health.heldOutPairs is ${health.heldOutPairs})`);
  }
  return result.data;
}

/** Sets `a.b.c` in a nested object, parsing the value as JSON where it is valid JSON (numbers, booleans). */
export function setDotted(target: Record<string, unknown>, dotted: string, raw: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const key of keys.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  let value = raw;
  if (typeof raw === 'string') {
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
  }
  node[keys[keys.length - 1]] = value;
}

/**
 * File, then overrides (dotted keys → values, e.g. { 'train.steps': 300 }), then validation.
 * The offline-DPO baselines imply γ = 1.
 */
export function loadRunConfig(file: string | undefined, overrides: Record<string, unknown> = {}): RunConfig {
  let base: Record<string, unknown> = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as Error).message}`);
    }
    try {
      base = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`);
    }
  }
  for (const [key, value] of Object.entries(overrides)) if (value !== undefined) setDotted(base, key, value);
  const config = parseRunConfig(base, file ? `config (${file} + flags)` : 'config flags');
  if (config.method !== 'dice' && config.replay.gamma !== 1) config.replay.gamma = 1;
  return config;
}

/** Whether the health stage runs after train (a default config skips it: the paper's lineage, unchanged). */
export function healthEnabled(config: RunConfig): boolean {
  return config.health.heldOutPairs > 0;
}

/** The DPO β of training. */
export function trainBeta(config: RunConfig): number {
  return config.train.beta ?? config.reward.beta;
}
