import type { Command } from 'commander';
import { intArg } from './generate.ts';

/** `dice score`: teacher-forced log-prob of each response given its prompt. */

interface ScoreOptions {
  model: string;
  input: string;
  threads: number;
  chat?: boolean;
  eos: boolean;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('score')
    .description('log-prob of each response given its prompt under the model (summed over response tokens)')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .requiredOption('--input <file>', 'record file (.jsonl/.json/.parquet) of {id?, prompt, response} or {id?, prompt_token_ids, response_token_ids}')
    .option('--threads <n>', 'onnxruntime intra-op threads', intArg(1), 1)
    .option('--chat', 'render prompts through the chat template (default: when the model has one)')
    .option('--no-chat', 'use prompt text as is')
    .option('--no-eos', 'do not append EOS to text responses')
    .option('--json', 'print one JSON line per record')
    .action(async (opts: ScoreOptions) => {
      const { Scorer } = await import('../../engine/scorer.ts');
      const { readRecordEntries, RecordsFileError } = await import('../../io/records-file.ts');
      type Item = import('../../engine/scorer.ts').ScoreRequest & { id: string };
      const items: Item[] = [];
      for await (const { value, index, location } of readRecordEntries(opts.input)) {
        const id = String(value.id ?? index);
        const ids = (key: string) => {
          const v = value[key];
          if (v === undefined) return undefined;
          if (!Array.isArray(v) || !v.every((t) => Number.isInteger(t))) throw new RecordsFileError(location, `"${key}" must be a list of integers`);
          return v as number[];
        };
        const promptTokenIds = ids('prompt_token_ids');
        const responseTokenIds = ids('response_token_ids');
        const { prompt, response } = value;
        if (!promptTokenIds && typeof prompt !== 'string' && !Array.isArray(prompt)) throw new RecordsFileError(location, 'needs "prompt" (text or chat messages) or "prompt_token_ids"');
        if (!responseTokenIds && typeof response !== 'string') throw new RecordsFileError(location, 'needs "response" (text) or "response_token_ids"');
        items.push({ id, promptTokenIds, responseTokenIds, prompt: prompt as Item['prompt'], response: response as string | undefined });
      }
      const scorer = await Scorer.open({ modelDir: opts.model, threads: opts.threads });
      try {
        const chat = opts.chat ?? scorer.hasChatTemplate;
        const started = performance.now();
        const results = await scorer.score(items.map((it) => ({ ...it, chat: it.promptTokenIds ? false : chat, appendEos: opts.eos })));
        const seconds = (performance.now() - started) / 1000;
        let tokens = 0;
        results.forEach((r, i) => {
          tokens += r.promptTokenIds.length + r.responseTokenIds.length;
          if (opts.json) console.log(JSON.stringify({ id: items[i].id, logProb: r.logProb, responseTokens: r.responseTokenIds.length, tokenLogProbs: r.tokenLogProbs }));
          else console.log(`${items[i].id}\t${r.logProb.toFixed(4)}\t${r.responseTokenIds.length} tokens`);
        });
        console.error(`scored ${results.length} records (${tokens} tokens) in ${seconds.toFixed(2)}s`);
      } finally {
        await scorer.close();
      }
    });
}
