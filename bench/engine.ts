/**
 * bench:engine — sampling and scoring throughput of our engines on the SmolLM2-135M shape, next to
 * PyTorch/transformers (tools/bench_engine_torch.py) and llama.cpp (bench/engine-llama.ts, through
 * node-llama-cpp) doing the same work on the same weights, each side in the same run.
 *
 *   npm run bench:engine [-- --model DIR --gguf FILE[,FILE] --threads N --batches 1,4,16 --new-tokens 128 --score 16x256 --repeats 3 --no-spin --no-torch --no-llama --quick]
 *
 * Weights: --model DIR (a Hugging Face folder, e.g. the dequantised SmolLM2-135M-Instruct); default a
 * random SmolLM2-135M-shaped init (`dice model init --arch smollm2-135m`, cached under .dice/bench/).
 * llama.cpp runs on each --gguf (a GGUF of the same weights: tools/gguf_dequantize.py makes the F32
 * GGUF of a quantised one, whose dequantisation the HF folder is); no --gguf, no llama.cpp column.
 * Each repeat times our sampler, our scorer, PyTorch and llama.cpp one after another, with the load
 * average (1 min) before and after each side; the table shows medians over repeats. The 2048² fp32
 * MatMul peak (onnxruntime, same threads) is measured at the start and the end of the run; each
 * figure's share of it counts model FLOPs (2 per matmul weight and token, lm_head included, plus
 * attention; for scoring the lm_head at response positions only, the work needed) at the tokens/s
 * measured — the same work for every side.
 * --no-spin: onnxruntime's idle threads do not spin (SessionConfig.spinning), which helps on a busy
 * machine; the PyTorch peer then runs with OMP_WAIT_POLICY=PASSIVE, its equivalent; llama.cpp (whose
 * threads always spin at barriers) is probed at --threads and at 1 thread and runs with the faster.
 * Sampling: B distinct prompts of 32 tokens, k = 1, T = 0.7, top-p 0.9, exactly `new-tokens` tokens
 * (EOS ignored so all sides do equal work). Scoring: B × L tokens teacher-forced, the last 3/4 of
 * each row the response (our scorer runs the lm_head there only; PyTorch on every position). Peak
 * RSS is the process's maxRSS after the first repeat's sampling runs (engines live in worker threads
 * of this process).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { Sampler } from '../src/engine/sampler.ts';
import { Scorer } from '../src/engine/scorer.ts';
import { writeInitModel } from '../src/model/init.ts';
import type { LlamaConfig } from '../src/model/llama-config.ts';
import { Rng } from '../src/util/random.ts';
import { forwardFlopsPerToken, matmulPeakGflops } from './peak.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const quick = process.argv.includes('--quick');
const threads = Number(arg('threads', String(Math.min(availableParallelism(), 8))));
const batches = arg('batches', quick ? '1,4' : '1,4,16').split(',').map(Number);
const newTokens = Number(arg('new-tokens', quick ? '16' : '128'));
const [scoreBatch, scoreLen] = arg('score', quick ? '4x64' : '16x256').split('x').map(Number);
const repeats = Number(arg('repeats', quick ? '1' : '3'));
const spinning = process.argv.includes('--no-spin') ? false : process.argv.includes('--spin') ? true : undefined;
const promptLen = 32;
const sampling = { temperature: 0.7, topP: 0.9, topK: 0 };

const modelDir = arg('model', join('.dice', 'bench', 'smollm2-135m'));
const ggufs = arg('gguf', '').split(',').filter(Boolean);
const withLlama = !process.argv.includes('--no-llama') && ggufs.length > 0;
if (process.argv.includes('--model') && !existsSync(join(modelDir, 'config.json'))) throw new Error(`bench:engine: --model ${modelDir} has no config.json`);
if (!existsSync(join(modelDir, 'model.safetensors'))) {
  console.error(`initialising ${modelDir} (random SmolLM2-135M-shaped weights)`);
  writeInitModel('smollm2-135m', modelDir, { seed: 0 });
}

const rng = new Rng(0);
const randomIds = (n: number) => Array.from({ length: n }, () => 3 + rng.int(997));
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

interface Row {
  work: string;
  /** Model FLOPs per token of this work (for the share of the MatMul peak). */
  flopsPerToken: number;
  ours: number[];
  torch: number[];
  /** Per GGUF file. */
  llama: number[][];
}
const sampleRequests = batches.map((b) => Array.from({ length: b }, (_, i) => ({ promptId: `p${i}`, promptTokenIds: randomIds(promptLen), k: 1, seed: 1 })));
const items = Array.from({ length: scoreBatch }, () => ({ promptTokenIds: randomIds(scoreLen / 4), responseTokenIds: randomIds(scoreLen - scoreLen / 4) }));
const rows: Row[] = [
  ...batches.map((b) => ({ work: `sample batch ${b}, ${promptLen}+${newTokens} tokens`, flopsPerToken: 0, ours: [], torch: [], llama: ggufs.map(() => []) })),
  { work: `score ${scoreBatch} × ${scoreLen} tokens`, flopsPerToken: 0, ours: [], torch: [], llama: [] },
];
/** Load average (1 min) before and after each side, per repeat. */
const loads: Array<Record<string, [number, number]>> = [];
const peaks: number[] = [];
let llamaInfo = '';
const llamaThreads: number[] = [];
const engine = { modelDir, threads, ...(spinning === undefined ? {} : { spinning }) };
let samplerPeakRss = 0;
let cfg: LlamaConfig | undefined;
const python = process.env.DICE_PYTHON ?? '/work/.venv/bin/python';
const withTorch = !process.argv.includes('--no-torch') && existsSync(python);
let torchInfo = '';

const load1 = () => loadavg()[0];
async function side<T>(rep: number, name: string, work: () => Promise<T> | T): Promise<T> {
  const before = load1();
  const out = await work();
  (loads[rep] ??= {})[name] = [before, load1()];
  return out;
}

peaks.push(await matmulPeakGflops(threads));
// Each repeat: our sampler, our scorer, then the peers, one after another (a shared machine's load drifts).
for (let rep = 0; rep < repeats; rep++) {
  await side(rep, 'ours sample', async () => {
    const sampler = await Sampler.open(engine);
    cfg = sampler.config;
    for (const [i, b] of batches.entries()) {
      const run = async () => {
        const res = await sampler.generate(sampleRequests[i], { ...sampling, maxNewTokens: newTokens, eosTokenIds: [], maxBatchRows: b });
        const n = res.reduce((a, r) => a + r.samples[0].tokenIds.length, 0);
        if (n !== b * newTokens) throw new Error(`expected ${b * newTokens} tokens, got ${n}`);
      };
      if (rep === 0) await run(); // warm-up
      rows[i].ours.push((b * newTokens) / (await timed(run)));
    }
    if (rep === 0) samplerPeakRss = process.resourceUsage().maxRSS * 1024;
    await sampler.close();
  });

  await side(rep, 'ours score', async () => {
    const scorer = await Scorer.open(engine);
    const score = async () => {
      await scorer.score(items, { maxBatchTokens: scoreBatch * scoreLen });
    };
    await score(); // warm-up
    rows[rows.length - 1].ours.push((scoreBatch * scoreLen) / (await timed(score)));
    await scorer.close();
  });

  if (withTorch) {
    console.error(`repeat ${rep + 1}/${repeats}: timing PyTorch (${python}) ...`);
    const r = await side(rep, 'torch', () => spawnSync(python, ['tools/bench_engine_torch.py', '--model', modelDir, '--threads', String(threads), '--sample-batches', batches.join(','), '--prompt-len', String(promptLen),
      '--new-tokens', String(newTokens), '--temperature', String(sampling.temperature), '--top-p', String(sampling.topP), '--top-k', String(sampling.topK),
      '--score-batch', String(scoreBatch), '--score-len', String(scoreLen), '--repeats', '1'],
      // --no-spin: the peer's OpenMP threads do not spin either (passive waits), for a like-for-like comparison
      { encoding: 'utf8', env: spinning === false ? { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } : process.env }));
    if (r.status !== 0) console.error(`PyTorch timing failed:\n${r.stderr.slice(-2000)}`);
    else {
      const peer = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { torch: string; sampling: Array<{ tokens_per_s: number }>; scoring: { tokens_per_s: number } };
      peer.sampling.forEach((x, i) => rows[i].torch.push(x.tokens_per_s));
      rows[rows.length - 1].torch.push(peer.scoring.tokens_per_s);
      torchInfo = `torch ${peer.torch}`;
    }
  }

  if (withLlama) {
    for (const [g, gguf] of ggufs.entries()) {
      console.error(`repeat ${rep + 1}/${repeats}: timing llama.cpp on ${gguf} ...`);
      const r = await side(rep, `llama.cpp ${g + 1}`, () => spawnSync(process.execPath, ['--import', 'tsx', 'bench/engine-llama.ts', '--gguf', gguf, '--threads', String(threads),
        '--threads-choices', [...new Set([threads, 1])].join(','), '--batches', batches.join(','), '--prompt-len', String(promptLen), '--new-tokens', String(newTokens),
        '--temperature', String(sampling.temperature), '--top-p', String(sampling.topP)], { encoding: 'utf8' }));
      if (r.status !== 0) console.error(`llama.cpp timing failed:\n${r.stderr.slice(-2000)}`);
      else {
        const peer = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { llamaCpp: string; threads: number; sampling: Array<{ tokens_per_s: number }> };
        peer.sampling.forEach((x, i) => rows[i].llama[g].push(x.tokens_per_s));
        llamaInfo = peer.llamaCpp;
        llamaThreads[g] = peer.threads;
      }
    }
  }
  report(`after repeat ${rep + 1}/${repeats}`);
}
peaks.push(await matmulPeakGflops(threads));
report('final');

function report(when: string): void {
  const c = cfg!;
  const D = c.hiddenSize;
  const params = c.vocabSize * D * (c.tieWordEmbeddings ? 1 : 2) + D +
    c.numLayers * (2 * D + D * c.numHeads * c.headDim * 2 + 2 * D * c.numKvHeads * c.headDim + 3 * D * c.intermediateSize);
  const weightsBytes = params * 4;
  const bMax = Math.max(...batches);
  const kvBytes = c.numLayers * 2 * bMax * c.numKvHeads * (promptLen + newTokens) * c.headDim * 4;
  batches.forEach((_, i) => (rows[i].flopsPerToken = forwardFlopsPerToken(c, promptLen + newTokens / 2)));
  // scoring needs the lm_head at response positions only (3/4 of the tokens): that is the work counted
  rows[rows.length - 1].flopsPerToken = forwardFlopsPerToken(c, scoreLen / 2) - (2 * c.vocabSize * D) / 4;
  const peak = Math.max(...peaks);
  const spin = spinning === undefined ? '' : `, spinning ${spinning ? 'on' : 'off'}`;
  const share = (tps: number | undefined, r: Row) => (tps === undefined ? '-' : `${((100 * tps * r.flopsPerToken) / 1e9 / peak).toFixed(0)}%`);
  console.log(`\nbench:engine — ${modelDir} (${(params / 1e6).toFixed(1)}M params, float32), ${threads} threads${spin}, onnxruntime-node cpu${torchInfo ? `; peers: ${torchInfo}` : ''}${llamaInfo ? `, ${llamaInfo}` : ''}`);
  console.log(`2048² fp32 MatMul peak (onnxruntime, ${threads} threads): ${peaks.map((p) => p.toFixed(1)).join(' (start), ')}${peaks.length > 1 ? ' (end)' : ' (start)'} GFLOP/s; shares below are of ${peak.toFixed(1)}`);
  ggufs.forEach((g, i) => console.log(`llama.cpp ${i + 1}: ${g}${llamaThreads[i] ? ` (${llamaThreads[i]} thread${llamaThreads[i] > 1 ? 's' : ''}, the faster of the probe)` : ''}`));
  console.log(`medians of ${rows[0].ours.length} repeat(s), ${when}, on ${availableParallelism()} cores`);
  const llamaHead = ggufs.map((_, i) => `${`llama.cpp ${i + 1}`.padStart(12)} ${'ratio'.padStart(6)}`).join(' ');
  console.log(`${'work'.padEnd(34)} ${'ours tok/s'.padStart(11)} ${'of peak'.padStart(7)} ${'torch'.padStart(8)} ${'of peak'.padStart(7)} ${'ratio'.padStart(6)} ${llamaHead}`);
  for (const r of rows) {
    const ours = median(r.ours);
    const torch = r.torch.length ? median(r.torch) : undefined;
    const llama = ggufs.map((_, i) => (r.llama[i]?.length ? median(r.llama[i]) : undefined));
    const llamaCells = llama.map((l) => `${(l?.toFixed(1) ?? '-').padStart(12)} ${(l ? (ours / l).toFixed(2) : '-').padStart(6)}`).join(' ');
    console.log(`${r.work.padEnd(34)} ${ours.toFixed(1).padStart(11)} ${share(ours, r).padStart(7)} ${(torch?.toFixed(1) ?? '-').padStart(8)} ${share(torch, r).padStart(7)} ${(torch ? (ours / torch).toFixed(2) : '-').padStart(6)} ${llamaCells}`);
  }
  for (const l of ggufs.map((_, i) => rows.slice(0, batches.length).map((r) => (r.llama[i]?.length ? `${share(median(r.llama[i]), r)}` : '-')))) {
    console.log(`llama.cpp share of peak per sampling row: ${l.join(', ')}`);
  }
  console.log('load average (1 min) before → after each side:');
  loads.forEach((sides, rep) => console.log(`  repeat ${rep + 1}: ${Object.entries(sides).map(([k, [a, b]]) => `${k} ${a.toFixed(1)} → ${b.toFixed(1)}`).join('; ')}`));
  console.log(`sampler peak RSS ${mb(samplerPeakRss)} MiB; weights ${mb(weightsBytes)} MiB + KV cache at batch ${bMax} ${mb(kvBytes)} MiB = ${mb(weightsBytes + kvBytes)} MiB (ratio ${(samplerPeakRss / (weightsBytes + kvBytes)).toFixed(2)}, target ≤ 2)`);
}
