/**
 * The llama.cpp peer of bench:engine: sampling throughput of llama.cpp (node-llama-cpp's prebuilt CPU
 * build) on a GGUF, run as llama.cpp's docs recommend for many streams: ONE context holding B
 * sequences, whose pending tokens node-llama-cpp batches into one llama_decode per step (continuous
 * batching, `batching.itemPrioritizationStrategy: 'maximumParallelism'`), with a batch of at least
 * B × prompt tokens so prompts prefill together, and all threads reserved for it (`threads.min`).
 * Separate contexts (or one sequence at a time) would decode B sequences one by one: no faster than one.
 *
 *   node --import tsx bench/engine-llama.ts --gguf FILE [--threads 2 --threads-choices 2,1 --batches 1,16,64 --prompt-len 32 --new-tokens 64 --temperature 0.7 --top-p 0.9 --repeats 1]
 *
 * Prompts: random token ids in [3, 1000), like bench:engine's; exactly `new-tokens` tokens per
 * sequence (EOS ignored). Prints one JSON line: tokens/s per batch size (best of repeats after a
 * short warm-up), and the thread probe: ggml's CPU threads spin at barriers, which on an
 * oversubscribed machine (load above the core count) costs a scheduler slice per barrier — measured
 * here at load ~17 on 2 cores: 0.3 tok/s with 2 threads, 5.2 with 1 — so the peer runs with the faster.
 */
import { getLlama, LlamaLogLevel, type LlamaModel, type Token } from 'node-llama-cpp';
import { Rng } from '../src/util/random.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const modelPath = arg('gguf', '');
if (!modelPath) throw new Error('engine-llama: --gguf FILE is required');
const threads = Number(arg('threads', '2'));
const batches = arg('batches', '1,16').split(',').map(Number);
const promptLen = Number(arg('prompt-len', '32'));
const newTokens = Number(arg('new-tokens', '64'));
const temperature = Number(arg('temperature', '0.7'));
const topP = Number(arg('top-p', '0.9'));
const repeats = Number(arg('repeats', '1'));
// --threads-choices 2,1: probe each thread count, run with the faster (see below)
const flashAttention = arg('flash-attention', 'auto');

const threadChoices = arg('threads-choices', String(threads)).split(',').map(Number);

const rng = new Rng(0);
const randomPrompt = () => Array.from({ length: promptLen }, () => (3 + rng.int(997)) as Token);

/** Seconds for B sequences of `promptLen` + `tokens` tokens in one context with B sequences (after a short warm-up). */
async function timeBatch(model: LlamaModel, B: number, tokens: number, nThreads: number, timed = 1): Promise<number> {
  const prompts = Array.from({ length: B }, randomPrompt);
  const context = await model.createContext({
    sequences: B,
    contextSize: promptLen + tokens + 16, // per sequence
    batchSize: Math.max(512, B * promptLen),
    threads: { ideal: nThreads, min: nThreads },
    flashAttention: flashAttention === 'auto' ? 'auto' : flashAttention === 'true',
    batching: { itemPrioritizationStrategy: 'maximumParallelism' },
  });
  const sequences = Array.from({ length: B }, () => context.getSequence());
  const run = async (n: number) => {
    const t0 = performance.now();
    const counts = await Promise.all(sequences.map(async (seq, i) => {
      let got = 0;
      for await (const _token of seq.evaluate(prompts[i], { temperature, topP, seed: i + 1, yieldEogToken: true })) {
        if (++got >= n) break;
      }
      await seq.clearHistory();
      return got;
    }));
    if (counts.some((c) => c !== n)) throw new Error(`engine-llama: expected ${n} tokens per sequence, got ${counts}`);
    return (performance.now() - t0) / 1000;
  };
  await run(Math.min(tokens, 4)); // warm-up
  let best = Infinity;
  for (let r = 0; r < timed; r++) best = Math.min(best, await run(tokens));
  await context.dispose();
  return best;
}

const out: {
  llamaCpp: string;
  gguf: string;
  threads: number;
  threadProbe: Array<{ threads: number; tokens_per_s: number }>;
  flashAttention: string;
  sampling: Array<{ batch: number; seconds: number; tokens_per_s: number }>;
} = { llamaCpp: '', gguf: modelPath, threads, threadProbe: [], flashAttention, sampling: [] };
let best = { threads, tokensPerS: -1 };
for (const t of threadChoices) {
  // ggml's CPU threads spin at barriers: on a busy machine fewer threads can be much faster, so the
  // peer runs with the faster of the candidate thread counts, probed on a short batched run
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: t });
  const model = await llama.loadModel({ modelPath });
  out.llamaCpp = `node-llama-cpp ${llama.buildType} build (llama.cpp release ${llama.llamaCppRelease.release})`;
  const B = Math.min(...batches);
  const tps = (B * 8) / (await timeBatch(model, B, 8, t));
  out.threadProbe.push({ threads: t, tokens_per_s: tps });
  if (tps > best.tokensPerS) best = { threads: t, tokensPerS: tps };
  await model.dispose();
  await llama.dispose();
}
out.threads = best.threads;
const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: best.threads });
const model = await llama.loadModel({ modelPath });
for (const B of batches) {
  const seconds = await timeBatch(model, B, newTokens, best.threads, repeats);
  out.sampling.push({ batch: B, seconds, tokens_per_s: (B * newTokens) / seconds });
}
await model.dispose();
await llama.dispose();
console.log(JSON.stringify(out));
