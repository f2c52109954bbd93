/**
 * bench:engine — sampling and scoring throughput of our engines on the SmolLM2-135M shape (random
 * weights from `dice model init --arch smollm2-135m`, cached under .dice/bench/), next to PyTorch/
 * transformers doing the same work on the same weights (tools/bench_engine_torch.py, when /work/pyenv
 * or $DICE_PYTHON has a Python with torch).
 *
 *   npm run bench:engine [-- --threads N --batches 1,4,16 --new-tokens 128 --score 16x256 --repeats 3 --no-spin --no-torch --quick]
 *
 * Each repeat times our sampler, our scorer and then the PyTorch peer back to back; the table shows
 * medians over repeats and the load average after each (a shared machine's load drifts). --no-spin:
 * onnxruntime's idle threads do not spin (SessionConfig.spinning), which helps on a busy machine; the
 * peer then runs with OMP_WAIT_POLICY=PASSIVE, PyTorch's equivalent.
 * Sampling: B distinct prompts of 32 tokens, k = 1, T = 0.7, top-p 0.9, exactly `new-tokens` tokens
 * (EOS ignored so both sides do equal work). Scoring: B × L tokens teacher-forced. Peak RSS is the
 * process's maxRSS after the first repeat's sampling runs (engines live in worker threads of this process).
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

const modelDir = join('.dice', 'bench', 'smollm2-135m');
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
  ours: number[];
  torch: number[];
}
const sampleRequests = batches.map((b) => Array.from({ length: b }, (_, i) => ({ promptId: `p${i}`, promptTokenIds: randomIds(promptLen), k: 1, seed: 1 })));
const items = Array.from({ length: scoreBatch }, () => ({ promptTokenIds: randomIds(scoreLen / 4), responseTokenIds: randomIds(scoreLen - scoreLen / 4) }));
const rows: Row[] = [...batches.map((b) => ({ work: `sample batch ${b}, ${promptLen}+${newTokens} tokens`, ours: [], torch: [] })), { work: `score ${scoreBatch} × ${scoreLen} tokens`, ours: [], torch: [] }];
const loads: number[] = [];
const engine = { modelDir, threads, ...(spinning === undefined ? {} : { spinning }) };
let samplerPeakRss = 0;
let cfg: LlamaConfig | undefined;
const python = process.env.DICE_PYTHON ?? '/work/pyenv/bin/python';
const withTorch = !process.argv.includes('--no-torch') && existsSync(python);
let torchInfo = '';

// Each repeat: our sampler, our scorer, then the PyTorch peer, back to back (a shared machine's load drifts).
for (let rep = 0; rep < repeats; rep++) {
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

  const scorer = await Scorer.open(engine);
  const score = async () => {
    await scorer.score(items, { maxBatchTokens: scoreBatch * scoreLen });
  };
  await score(); // warm-up
  rows[rows.length - 1].ours.push((scoreBatch * scoreLen) / (await timed(score)));
  await scorer.close();

  if (withTorch) {
    console.error(`repeat ${rep + 1}/${repeats}: timing PyTorch (${python}) ...`);
    const r = spawnSync(python, ['tools/bench_engine_torch.py', '--model', modelDir, '--threads', String(threads), '--sample-batches', batches.join(','), '--prompt-len', String(promptLen),
      '--new-tokens', String(newTokens), '--temperature', String(sampling.temperature), '--top-p', String(sampling.topP), '--top-k', String(sampling.topK),
      '--score-batch', String(scoreBatch), '--score-len', String(scoreLen), '--repeats', '1'],
      // --no-spin: the peer's OpenMP threads do not spin either (passive waits), for a like-for-like comparison
      { encoding: 'utf8', env: spinning === false ? { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } : process.env });
    if (r.status !== 0) console.error(`PyTorch timing failed:\n${r.stderr.slice(-2000)}`);
    else {
      const peer = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { torch: string; sampling: Array<{ tokens_per_s: number }>; scoring: { tokens_per_s: number } };
      peer.sampling.forEach((x, i) => rows[i].torch.push(x.tokens_per_s));
      rows[rows.length - 1].torch.push(peer.scoring.tokens_per_s);
      torchInfo = `torch ${peer.torch}`;
    }
  }
  loads.push(loadavg()[0]);
  report(`after repeat ${rep + 1}/${repeats}`);
}

function report(when: string): void {
  const c = cfg!;
  const D = c.hiddenSize;
  const params = c.vocabSize * D * (c.tieWordEmbeddings ? 1 : 2) + D +
    c.numLayers * (2 * D + D * c.numHeads * c.headDim * 2 + 2 * D * c.numKvHeads * c.headDim + 3 * D * c.intermediateSize);
  const weightsBytes = params * 4;
  const bMax = Math.max(...batches);
  const kvBytes = c.numLayers * 2 * bMax * c.numKvHeads * (promptLen + newTokens) * c.headDim * 4;
  const spin = spinning === undefined ? '' : `, spinning ${spinning ? 'on' : 'off'}`;
  console.log(`\nbench:engine — SmolLM2-135M shape (${(params / 1e6).toFixed(1)}M params, float32), ${threads} threads${spin}, onnxruntime-node cpu${torchInfo ? `; peer: ${torchInfo}` : ''}`);
  console.log(`medians of ${rows[0].ours.length} repeat(s), ${when}; load average (1 min) at each repeat's end: ${loads.map((l) => l.toFixed(1)).join(', ')} on ${availableParallelism()} cores`);
  console.log(`${'work'.padEnd(36)} ${'ours tok/s'.padStart(11)} ${'torch tok/s'.padStart(12)} ${'ratio'.padStart(6)}`);
  for (const r of rows) {
    const ours = median(r.ours);
    const torch = r.torch.length ? median(r.torch) : undefined;
    console.log(`${r.work.padEnd(36)} ${ours.toFixed(1).padStart(11)} ${(torch?.toFixed(1) ?? '-').padStart(12)} ${(torch ? (ours / torch).toFixed(2) : '-').padStart(6)}`);
  }
  console.log(`sampler peak RSS ${mb(samplerPeakRss)} MiB; weights ${mb(weightsBytes)} MiB + KV cache at batch ${bMax} ${mb(kvBytes)} MiB = ${mb(weightsBytes + kvBytes)} MiB (ratio ${(samplerPeakRss / (weightsBytes + kvBytes)).toFixed(2)}, target ≤ 2)`);
}
