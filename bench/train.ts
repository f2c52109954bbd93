/**
 * bench:train — one DPO optimizer step (forward + backward of policy on chosen and rejected, DPO loss,
 * clip, AdamW) of our trainer, next to PyTorch autograd + torch.optim.AdamW doing the same step on
 * the same weights and batch (tools/bench_train_torch.py, when /work/pyenv or $DICE_PYTHON has torch).
 *
 *   npm run bench:train [-- --threads N --shapes tiny,smollm2-135m --cases 32x32,8x256 --steps 2 --micro-batch P --no-torch --quick]
 *
 * A case PxL is P pairs of L tokens per sequence (L/2 prompt, L/2 response), so a step runs 2P rows.
 * Each (shape, case) runs in a fresh child process so its peak RSS is its own. Model FLOP/s counts
 * 6·N·tokens for the N weights used in matmuls (lm_head included, the embedding lookup not) plus
 * causal-unexploited attention 12·layers·T·d per token, over the median step time after one warm-up
 * step; the fp32 peak is a 2048² MatMul timed in the same process with the same thread count.
 * --micro-batch P applies to both sides (gradient accumulation over P pairs at a time).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { writeInitModel } from '../src/model/init.ts';
import { loadModel } from '../src/model/load.ts';
import { llamaParameterShapes } from '../src/model/llama-graph.ts';
import type { LlamaConfig } from '../src/model/llama-config.ts';
import { GraphBuilder, serializeModel } from '../src/onnx/builder.ts';
import { createSession } from '../src/onnx/session.ts';
import { TrainerCore } from '../src/engine/trainer-core.ts';
import type { PreferencePair } from '../src/engine/trainer-batch.ts';
import { Rng } from '../src/util/random.ts';
import { parseLoraFlag } from '../src/cli/lora-flag.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const quick = process.argv.includes('--quick');
const threads = Number(arg('threads', String(Math.min(availableParallelism(), 8))));
const shapes = arg('shapes', quick ? 'tiny' : 'tiny,smollm2-135m').split(',');
const cases = arg('cases', quick ? '4x32' : '32x32,8x256').split(',');
const steps = Number(arg('steps', quick ? '1' : '2'));
const microBatch = arg('micro-batch', '0') === '0' ? undefined : Number(arg('micro-batch', '0'));
/** --lora SPEC: LoRA against full fine-tuning and against PyTorch + peft (bench/train-lora.ts). */
const loraSpec = arg('lora', '');

interface Result {
  shape: string;
  case: string;
  /** Median over the timed steps. */
  stepSeconds: number;
  steps: number[];
  tokensPerSecond: number;
  modelGflops: number;
  peakGflops: number;
  peakRssMb: number;
  loss: number;
}

function modelDir(shape: string): string {
  const dir = join('.dice', 'bench', shape);
  if (!existsSync(join(dir, 'model.safetensors'))) {
    console.error(`initialising ${dir} (random ${shape}-shaped weights)`);
    writeInitModel(shape, dir, { seed: 0 });
  }
  return dir;
}

/** The batch both sides train on: deterministic ids from the seed, written for the PyTorch peer. */
function makeBatch(config: LlamaConfig, pairs: number, length: number): { promptTokenIds: number[][]; chosen: number[][]; rejected: number[][]; refChosen: number[]; refRejected: number[] } {
  const rng = new Rng(1234);
  const vocab = Math.min(config.vocabSize, 1000);
  const seq = (n: number) => Array.from({ length: n }, () => 3 + rng.int(vocab - 3));
  const half = length / 2;
  const promptTokenIds = Array.from({ length: pairs }, () => seq(half));
  return {
    promptTokenIds,
    chosen: Array.from({ length: pairs }, () => seq(half)),
    rejected: Array.from({ length: pairs }, () => seq(half)),
    refChosen: Array.from({ length: pairs }, () => -half * 7 + rng.next()),
    refRejected: Array.from({ length: pairs }, () => -half * 7 + rng.next()),
  };
}

function modelFlopsPerStep(config: LlamaConfig, rows: number, length: number): number {
  let matmulParams = 0;
  for (const [name, shape] of llamaParameterShapes(config)) if (shape.length === 2 && name !== 'model.embed_tokens.weight') matmulParams += shape[0] * shape[1];
  matmulParams += config.vocabSize * config.hiddenSize; // lm_head (tied or not)
  const tokens = rows * length;
  const attention = 12 * config.numLayers * length * config.numHeads * config.headDim;
  return tokens * (6 * matmulParams + attention);
}

async function matmulPeakGflops(): Promise<number> {
  const n = 2048;
  const g = new GraphBuilder('peak');
  const a = g.input('a', 'float32', [n, n]);
  const b = g.input('b', 'float32', [n, n]);
  g.output(g.op1('MatMul', [a, b]), 'float32', [n, n], 'c');
  const s = await createSession(serializeModel(g), { threads });
  const data = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000);
  const feeds = { a: new ort.Tensor('float32', data, [n, n]), b: new ort.Tensor('float32', data, [n, n]) };
  await s.run(feeds);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await s.run(feeds);
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  return (2 * n ** 3) / best / 1e9;
}

/** Child process: one (shape, case) measured on its own. */
async function child(shape: string, kase: string): Promise<void> {
  const [pairs, length] = kase.split('x').map(Number);
  const dir = modelDir(shape);
  const model = loadModel(dir);
  const batch = makeBatch(model.config, pairs, length);
  const batchFile = join('.dice', 'bench', `train-batch-${shape}-${kase}.json`);
  writeFileSync(batchFile, JSON.stringify(batch));
  const lora = loraSpec ? { config: parseLoraFlag(loraSpec) } : undefined; // LoRA hook (bench/train-lora.ts)
  const trainer = new TrainerCore(model.config, model.weights, { loss: 'dpo', beta: 0.1, lr: 1e-5, warmupSteps: 0, threads, maxPositions: length, microBatch, lora });
  model.weights.clear();
  const ppairs: PreferencePair[] = batch.promptTokenIds.map((p, i) => ({
    promptTokenIds: p,
    chosenTokenIds: batch.chosen[i],
    rejectedTokenIds: batch.rejected[i],
    refChosenLogp: batch.refChosen[i],
    refRejectedLogp: batch.refRejected[i],
  }));
  await trainer.step({ kind: 'preference', pairs: ppairs }); // warm-up: session creation and first-run allocation
  const times: number[] = [];
  let loss = 0;
  for (let s = 0; s < steps; s++) {
    const m = await trainer.step({ kind: 'preference', pairs: ppairs });
    times.push(m.seconds);
    loss = m.loss;
  }
  const stepSeconds = median(times);
  const peakGflops = await matmulPeakGflops();
  const result: Result = {
    shape,
    case: kase,
    stepSeconds,
    steps: times,
    tokensPerSecond: (2 * pairs * length) / stepSeconds,
    modelGflops: modelFlopsPerStep(model.config, 2 * pairs, length) / stepSeconds / 1e9,
    peakGflops,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    loss,
  };
  console.log(`RESULT ${JSON.stringify({ ...result, batchFile, modelDir: dir })}`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const load = () => loadavg()[0].toFixed(1);

function python(): string | null {
  const candidates = [process.env.DICE_PYTHON, '/work/pyenv/bin/python'].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p)) ?? null;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3], process.argv[4]);
  if (loraSpec) return (await import('./train-lora.ts')).loraBench({ shapes, cases, threads, steps, microBatch, lora: loraSpec, torch: !process.argv.includes('--no-torch') });
  mkdirSync(join('.dice', 'bench'), { recursive: true });
  const py = process.argv.includes('--no-torch') ? null : python();
  console.log(`bench:train  threads=${threads}  steps=${steps} (+1 warm-up)  onnxruntime ${ort.env.versions.common}  ${py ? `peer: ${py}` : 'no PyTorch peer'}`);
  const rows: string[] = [];
  for (const shape of shapes) {
    for (const kase of cases) {
      const loadBefore = load();
      const run = spawnSync(process.execPath, ['--import', 'tsx', process.argv[1], '--child', shape, kase, '--threads', String(threads), '--steps', String(steps), '--micro-batch', String(microBatch ?? 0)], { encoding: 'utf8', maxBuffer: 1 << 26 });
      const line = run.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) {
        console.error(`${shape} ${kase}: failed\n${run.stderr.split('\n').filter((l) => !l.includes('W:onnxruntime')).slice(-10).join('\n')}`);
        continue;
      }
      const r = JSON.parse(line.slice(7)) as Result & { batchFile: string; modelDir: string };
      const loadOurs = load();
      let torch: { stepSeconds: number; steps: number[]; peakRssMb: number; loss: number } | null = null;
      if (py) {
        const t = spawnSync(py, ['tools/bench_train_torch.py', '--model', r.modelDir, '--batch', r.batchFile, '--threads', String(threads), '--steps', String(steps), '--micro-batch', String(microBatch ?? 0)], { encoding: 'utf8' });
        const tl = t.stdout.split('\n').find((l) => l.startsWith('RESULT '));
        if (tl) torch = JSON.parse(tl.slice(7));
        else console.error(`PyTorch ${shape} ${kase}: failed\n${t.stderr.slice(-1000)}`);
      }
      rows.push(
        [
          shape.padEnd(13),
          kase.padEnd(7),
          `${r.stepSeconds.toFixed(3)}s`.padStart(9),
          `${r.tokensPerSecond.toFixed(0)}`.padStart(8),
          `${r.modelGflops.toFixed(1)}`.padStart(7),
          `${((100 * r.modelGflops) / r.peakGflops).toFixed(0)}% of ${r.peakGflops.toFixed(0)}`.padStart(12),
          `${r.peakRssMb.toFixed(0)}MB`.padStart(8),
          torch ? `${torch.stepSeconds.toFixed(3)}s`.padStart(9) : '        -',
          torch ? `${torch.peakRssMb.toFixed(0)}MB`.padStart(8) : '       -',
          torch ? `${(torch.stepSeconds / r.stepSeconds).toFixed(2)}`.padStart(6) : '     -',
          torch ? `${Math.abs(torch.loss - r.loss).toExponential(1)}`.padStart(8) : '        ',
          `${loadBefore}/${loadOurs}/${load()}`.padStart(14),
        ].join('  '),
      );
      console.log(rows[rows.length - 1]);
      console.log(`  steps: ours ${r.steps.map((x) => x.toFixed(2)).join(' ')}${torch ? `  torch ${torch.steps.map((x) => x.toFixed(2)).join(' ')}` : ''}`);
    }
  }
  console.log('\nshape          case         ours  tok/s   GFLOP/s  of MatMul peak  ours RSS   torch  torch RSS  ratio  |Δloss|   load avg (1 min)');
  for (const r of rows) console.log(r);
  console.log('ratio = PyTorch step time / ours (≥ 1: ours is faster); step times are medians. Case PxL: P pairs, 2P rows of L tokens.');
  console.log('load avg: before ours / after ours / after PyTorch — the 2 cores are shared, and timings (PyTorch\'s OpenMP most) swing with load.');
}

await main();
