import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';

/** `dice generate`: sample K responses per prompt from a model directory. */

export function intArg(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`must be an integer ≥ ${min}`);
    return n;
  };
}

export function floatArg(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) throw new InvalidArgumentError(`must be a number in [${min}, ${max}]`);
    return n;
  };
}

interface GenerateOptions {
  model: string;
  prompt?: string[];
  prompts?: string;
  k: number;
  seed: number;
  temperature: number;
  topP: number;
  topK: number;
  maxNewTokens: number;
  threads: number;
  chat?: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('generate')
    .description('sample K responses per prompt (text, finish reason, log-prob under the model)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--prompt <text...>', 'prompt text (repeatable)')
    .option('--prompts <file>', 'record file (.jsonl/.json/.parquet) of {id?, prompt: text | [{role, content}]} or {id?, prompt_token_ids}')
    .option('-k, --k <n>', 'samples per prompt', intArg(1), 1)
    .option('--seed <n>', 'run seed (sample seeds derive from it, the prompt id and k)', intArg(0), 0)
    .option('--temperature <t>', 'sampling temperature (0: greedy)', floatArg(0, 100), 1)
    .option('--top-p <p>', 'nucleus mass in (0, 1]', floatArg(Number.MIN_VALUE, 1), 1)
    .option('--top-k <n>', 'keep the k most likely tokens (0: all)', intArg(0), 0)
    .option('--max-new-tokens <n>', 'response length limit in tokens', intArg(1), 128)
    .option('--threads <n>', 'onnxruntime intra-op threads', intArg(1), 1)
    .option('--chat', 'render prompts through the chat template (default: when the model has one)')
    .option('--no-chat', 'use prompt text as is')
    .option('--json', 'print one JSON line per prompt')
    .action(async (opts: GenerateOptions) => {
      const { Sampler } = await import('../../engine/sampler.ts');
      if (!opts.prompt && !opts.prompts) throw new Error('generate: give --prompt TEXT or --prompts FILE');
      const inputs: PromptRecord[] = opts.prompts ? await readPrompts(opts.prompts) : opts.prompt!.map((p, i) => ({ promptId: String(i), prompt: p }));
      const sampler = await Sampler.open({ modelDir: opts.model, threads: opts.threads });
      try {
        const chat = opts.chat ?? sampler.hasChatTemplate;
        const requests = inputs.map((p) => ({ ...p, chat: p.promptTokenIds ? false : chat, k: opts.k, seed: opts.seed }));
        const started = performance.now();
        const results = await sampler.generate(requests, { temperature: opts.temperature, topP: opts.topP, topK: opts.topK, maxNewTokens: opts.maxNewTokens });
        const seconds = (performance.now() - started) / 1000;
        let tokens = 0;
        let failed = 0;
        for (const r of results) {
          if (r.error) failed++;
          for (const s of r.samples) tokens += s.tokenIds.length;
          if (opts.json) console.log(JSON.stringify(r));
          else if (r.error) console.log(`# ${r.promptId}: ERROR ${r.error}`);
          else {
            for (const s of r.samples) {
              console.log(`# ${r.promptId} k=${s.k} (${s.finishReason}, ${s.tokenIds.length} tokens, log-prob ${s.logProb.toFixed(3)})`);
              console.log(s.text ?? s.tokenIds.join(' '));
            }
          }
        }
        console.error(`generated ${tokens} tokens for ${results.length} prompts × ${opts.k} in ${seconds.toFixed(2)}s (${(tokens / seconds).toFixed(1)} tokens/s)${failed ? `; ${failed} prompts failed` : ''}`);
        if (failed) process.exitCode = 1;
      } finally {
        await sampler.close();
      }
    });
}

type PromptRecord = { promptId: string; prompt?: string | Array<{ role: string; content: string }>; promptTokenIds?: number[] };

/** Prompt records: `prompt` (text or chat messages) or `prompt_token_ids`; `id` (default: line index). */
export async function readPrompts(path: string): Promise<PromptRecord[]> {
  const { readRecordEntries, RecordsFileError } = await import('../../io/records-file.ts');
  const out: PromptRecord[] = [];
  for await (const { value, index, location } of readRecordEntries(path)) {
    const id = value.id ?? value.promptId ?? value.prompt_id ?? index;
    if (typeof id !== 'string' && typeof id !== 'number') throw new RecordsFileError(location, '"id" must be a string or a number');
    const ids = value.prompt_token_ids;
    if (ids !== undefined) {
      if (!Array.isArray(ids) || !ids.every((t) => Number.isInteger(t))) throw new RecordsFileError(location, '"prompt_token_ids" must be a list of integers');
      out.push({ promptId: String(id), promptTokenIds: ids as number[] });
      continue;
    }
    const p = value.prompt;
    const isMessages = Array.isArray(p) && p.every((m) => m && typeof m === 'object' && typeof m.role === 'string' && typeof m.content === 'string');
    if (typeof p !== 'string' && !isMessages) throw new RecordsFileError(location, '"prompt" must be text or a list of {role, content} messages (or give "prompt_token_ids")');
    out.push({ promptId: String(id), prompt: p as PromptRecord['prompt'] });
  }
  return out;
}
