import type { Command } from 'commander';

/**
 * The run-config flags shared by `dice run`, `dice serve` and `dice experiment`: each maps onto a
 * dotted key of the config schema (src/config/schema.ts), so a flag overrides the --config file.
 */
export const RUN_FLAGS: Array<{ flags: string; key: string; description: string; parse?: (v: string) => unknown }> = [
  { flags: '--rounds <n>', key: 'rounds', description: 'DICE rounds (paper: 2)', parse: Number },
  { flags: '--prompts-per-round <n>', key: 'promptsPerRound', description: 'prompts per round (default: the file split over the rounds)', parse: Number },
  { flags: '-k, --samples <k>', key: 'sampling.k', description: 'responses per prompt (paper: 16)', parse: Number },
  { flags: '--temperature <t>', key: 'sampling.temperature', description: 'sampling temperature (paper: 0.7)', parse: Number },
  { flags: '--top-p <p>', key: 'sampling.topP', description: 'nucleus sampling (paper: 0.9)', parse: Number },
  { flags: '--top-k <k>', key: 'sampling.topK', description: 'top-k sampling (0: off)', parse: Number },
  { flags: '--max-new-tokens <n>', key: 'sampling.maxNewTokens', description: 'longest response in tokens', parse: Number },
  { flags: '--beta <b>', key: 'reward.beta', description: 'β of the implicit reward and DPO (paper: 0.1)', parse: Number },
  { flags: '--gamma <g>', key: 'replay.gamma', description: 'experience replay share of offline pairs (paper: 0.5)', parse: Number },
  { flags: '--alpha <a>', key: 'alpha.value', description: 'a fixed length penalty α (implies --alpha-mode fixed)', parse: Number },
  { flags: '--alpha-mode <mode>', key: 'alpha.mode', description: 'optimal (α* of Eq. 6) | fixed' },
  { flags: '--loss <loss>', key: 'train.loss', description: 'dpo | ipo | hinge | kto' },
  { flags: '--steps <n>', key: 'train.steps', description: 'training steps per round (paper: 300)', parse: Number },
  { flags: '--batch <n>', key: 'train.batch', description: 'pairs per step (paper: 32)', parse: Number },
  { flags: '--micro-batch <n>', key: 'train.microBatch', description: 'pairs per onnxruntime run (gradient accumulation)', parse: Number },
  { flags: '--lr <lr>', key: 'train.lr', description: 'learning rate (constant after warm-up)', parse: Number },
  { flags: '--warmup <n>', key: 'train.warmupSteps', description: 'linear warm-up steps (paper: 50)', parse: Number },
  { flags: '--lora <spec>', key: 'train.lora', description: 'train a LoRA adapter per round on the frozen policy, e.g. r=16,alpha=32,targets=q,k,v,o,gate,up,down (PEFT format checkpoints)' },
  { flags: '--method <m>', key: 'method', description: 'dice | offline-dpo | offline-dpo-new-ref' },
  { flags: '--seed <n>', key: 'seed', description: 'run seed', parse: Number },
  { flags: '--threads <n>', key: 'threads', description: 'onnxruntime threads per engine (fixed for determinism)', parse: Number },
  { flags: '--provider <p>', key: 'provider', description: 'execution provider: cpu | webgpu | cuda' },
];

export function addRunFlags(cmd: Command): Command {
  for (const f of RUN_FLAGS) cmd.option(f.flags, f.description);
  return cmd.option('--config <file>', 'a JSON run config (flags override it)').option('--set <key=value...>', 'any config key, e.g. --set alpha.multiplier=2');
}

/** Flag values as dotted config overrides (commander's camelCase option names → schema keys). */
export function runOverrides(opts: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of RUN_FLAGS) {
    const long = f.flags.split(/[ ,]+/).find((s) => s.startsWith('--'))!.slice(2);
    const camel = long.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    const value = opts[camel];
    if (value === undefined) continue;
    const parsed = f.parse ? f.parse(String(value)) : value;
    if (typeof parsed === 'number' && Number.isNaN(parsed)) throw new Error(`--${long} must be a number, got ${JSON.stringify(value)}`);
    out[f.key] = parsed;
  }
  if (out['alpha.value'] !== undefined && out['alpha.mode'] === undefined) out['alpha.mode'] = 'fixed';
  for (const pair of (opts.set as string[] | undefined) ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`--set expects key=value, got ${JSON.stringify(pair)}`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
