/**
 * bench:engine — sampling and scoring throughput of our engines on the SmolLM2-135M shape (random
 * weights from `dice model init --arch smollm2-135m`, cached under .dice/bench/), next to PyTorch/
 * transformers doing the same work on the same weights (tools/bench_engine_torch.py, when /work/pyenv
 * or $DICE_PYTHON has a Python with torch).
 *
 *   npm run bench:engine [-- --threads N --batches 1,4,16 --new-tokens 128 --score 16x256 --no-torch --quick]
 *
 * Sampling: B distinct prompts of 32 tokens, k = 1, T = 0.7, top-p 0.9, exactly `new-tokens` tokens
 * (EOS ignored so both sides do equal work). Scoring: B × L tokens teacher-forced. Peak RSS is the
 * process's maxRSS after the sampling runs (engines live in worker threads of this process).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Sampler } from '../src/engine/sampler.ts';
import { Scorer } from '../src/engine/scorer.ts';
import { writeInitModel } from '../src/model/init.ts';
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
const repeats = Number(arg('repeats', '1'));
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

async function best(fn: () => Promise<void>): Promise<number> {
  await fn(); // warm-up
  let t = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t0 = performance.now();
    await fn();
    t = Math.min(t, (performance.now() - t0) / 1000);
  }
  return t;
}

interface Row {
  work: string;
  ours: number;
  torch?: number;
}
const rows: Row[] = [];

const sampler = await Sampler.open({ modelDir, threads });
const cfg = sampler.config;
for (const b of batches) {
  const requests = Array.from({ length: b }, (_, i) => ({ promptId: `p${i}`, promptTokenIds: randomIds(promptLen), k: 1, seed: 1 }));
  const t = await best(async () => {
    const res = await sampler.generate(requests, { ...sampling, maxNewTokens: newTokens, eosTokenIds: [], maxBatchRows: b });
    const n = res.reduce((a, r) => a + r.samples[0].tokenIds.length, 0);
    if (n !== b * newTokens) throw new Error(`expected ${b * newTokens} tokens, got ${n}`);
  });
  rows.push({ work: `sample batch ${b}, ${promptLen}+${newTokens} tokens`, ours: (b * newTokens) / t });
}
const samplerPeakRss = process.resourceUsage().maxRSS * 1024;
await sampler.close();

const scorer = await Scorer.open({ modelDir, threads });
const items = Array.from({ length: scoreBatch }, () => ({ promptTokenIds: randomIds(scoreLen / 4), responseTokenIds: randomIds(scoreLen - scoreLen / 4) }));
const ts = await best(async () => {
  await scorer.score(items, { maxBatchTokens: scoreBatch * scoreLen });
});
rows.push({ work: `score ${scoreBatch} × ${scoreLen} tokens`, ours: (scoreBatch * scoreLen) / ts });
await scorer.close();

let params = 0;
const weightsBytes = (() => {
  const D = cfg.hiddenSize;
  params = cfg.vocabSize * D * (cfg.tieWordEmbeddings ? 1 : 2) + D +
    cfg.numLayers * (2 * D + D * cfg.numHeads * cfg.headDim * 2 + 2 * D * cfg.numKvHeads * cfg.headDim + 3 * D * cfg.intermediateSize);
  return params * 4;
})();
const bMax = Math.max(...batches);
const kvBytes = cfg.numLayers * 2 * bMax * cfg.numKvHeads * (promptLen + newTokens) * cfg.headDim * 4;

const report = (title: string) => {
  console.log(`\nbench:engine — SmolLM2-135M shape (${(params / 1e6).toFixed(1)}M params, float32), ${threads} threads, onnxruntime-node cpu${title}`);
  console.log(`${'work'.padEnd(36)} ${'ours tok/s'.padStart(11)} ${'torch tok/s'.padStart(12)} ${'ratio'.padStart(6)}`);
  for (const r of rows) {
    console.log(`${r.work.padEnd(36)} ${r.ours.toFixed(1).padStart(11)} ${(r.torch?.toFixed(1) ?? '-').padStart(12)} ${(r.torch ? (r.ours / r.torch).toFixed(2) : '-').padStart(6)}`);
  }
  console.log(`sampler peak RSS ${mb(samplerPeakRss)} MiB; weights ${mb(weightsBytes)} MiB + KV cache at batch ${bMax} ${mb(kvBytes)} MiB = ${mb(weightsBytes + kvBytes)} MiB (ratio ${(samplerPeakRss / (weightsBytes + kvBytes)).toFixed(2)}, target ≤ 2)`);
};
report(''); // ours first: the peer run is long

const python = process.env.DICE_PYTHON ?? '/work/pyenv/bin/python';
let torchInfo = '';
if (!process.argv.includes('--no-torch') && existsSync(python)) {
  console.error(`timing PyTorch (${python}) ...`);
  const r = spawnSync(python, ['tools/bench_engine_torch.py', '--model', modelDir, '--threads', String(threads), '--sample-batches', batches.join(','), '--prompt-len', String(promptLen),
    '--new-tokens', String(newTokens), '--temperature', String(sampling.temperature), '--top-p', String(sampling.topP), '--top-k', String(sampling.topK),
    '--score-batch', String(scoreBatch), '--score-len', String(scoreLen), '--repeats', String(repeats)], { encoding: 'utf8' });
  if (r.status !== 0) console.error(`PyTorch timing failed:\n${r.stderr.slice(-2000)}`);
  else {
    const peer = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { torch: string; sampling: Array<{ tokens_per_s: number }>; scoring: { tokens_per_s: number } };
    peer.sampling.forEach((s, i) => (rows[i].torch = s.tokens_per_s));
    rows[rows.length - 1].torch = peer.scoring.tokens_per_s;
    torchInfo = `torch ${peer.torch}`;
  }
}

if (torchInfo) report(`; peer: ${torchInfo}`);
