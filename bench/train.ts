/**
 * bench:train — one DPO optimizer step (forward + backward of policy on chosen and rejected, DPO loss,
 * clip, AdamW) of our trainer, next to PyTorch autograd + torch.optim.AdamW doing the same step on
 * the same weights and batch (tools/bench_train_torch.py, with $DICE_PYTHON, /work/.venv or /work/pyenv's torch).
 *
 *   npm run bench:train [-- --threads N --shapes tiny,smollm2-135m --cases 32x32,8x256 --steps 2 --micro-batch P --model DIR --no-spin --no-share --no-torch --quick]
 *
 * --model DIR: real weights (a Hugging Face model folder, e.g. SmolLM2-135M-Instruct imported from
 * its GGUF) in place of the random shape-named inits (.dice/bench/<shape>); the row is named after DIR.
 *
 * A case PxL is P pairs of L tokens per sequence (L/2 prompt, L/2 response), so a step runs 2P rows.
 * Each (shape, case) runs in a fresh child process so its peak RSS is its own. Model FLOP/s counts
 * 6·N·tokens for the N weights used in matmuls (lm_head included, the embedding lookup not) plus
 * causal-unexploited attention 12·layers·T·d per token, over the median step time after one warm-up
 * step; the fp32 peak is a 2048² MatMul timed in our child with the same thread count (onnxruntime),
 * and each side's model FLOP/s is quoted as a share of it (the peer also reports torch's own 2048²).
 * The load average is printed before and after each side.
 * Our trainer runs each pair's prompt once for both responses (TrainerOptions.sharedPrompt, its
 * default; --no-share: two rows per pair, as the peer does). Model FLOP/s counts the two-row step's
 * work on both sides, so with the prompt shared it is the rate of the same step, not of the work done.
 * --micro-batch P applies to both sides (gradient accumulation over P pairs at a time). --no-spin:
 * onnxruntime's idle intra-op threads do not spin, and the peer runs with OMP_WAIT_POLICY=PASSIVE.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { basename, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadModel } from '../src/model/load.ts';
import type { LlamaConfig } from '../src/model/llama-config.ts';
import { TrainerCore } from '../src/engine/trainer-core.ts';
import type { PreferencePair } from '../src/engine/trainer-batch.ts';
import { benchModelDir, makeBenchBatch } from './train-batch.ts';
import { matmulParams, matmulPeakGflops } from './peak.ts';
import { parseLoraFlag } from '../src/cli/lora-flag.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const quick = process.argv.includes('--quick');
const threads = Number(arg('threads', String(Math.min(availableParallelism(), 8))));
const cases = arg('cases', quick ? '4x32' : '32x32,8x256').split(',');
const steps = Number(arg('steps', quick ? '1' : '2'));
const microBatch = arg('micro-batch', '0') === '0' ? undefined : Number(arg('micro-batch', '0'));
const modelArg = arg('model', '');
const noSpin = process.argv.includes('--no-spin');
const sharedPrompt = !process.argv.includes('--no-share');
const shapes = modelArg ? [basename(resolve(modelArg))] : arg('shapes', quick ? 'tiny' : 'tiny,smollm2-135m').split(',');
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

function modelFlopsPerStep(config: LlamaConfig, rows: number, length: number): number {
  const tokens = rows * length;
  const attention = 12 * config.numLayers * length * config.numHeads * config.headDim;
  return tokens * (6 * matmulParams(config) + attention);
}

/** Child process: one (shape, case) measured on its own. */
async function child(shape: string, kase: string): Promise<void> {
  const [pairs, length] = kase.split('x').map(Number);
  const dir = modelArg || benchModelDir(shape);
  if (modelArg && !existsSync(join(dir, 'config.json'))) throw new Error(`--model ${dir}: no config.json there (a Hugging Face model folder is expected)`);
  const model = loadModel(dir);
  const batch = makeBenchBatch(model.config, pairs, length);
  const batchFile = join('.dice', 'bench', `train-batch-${shape}-${kase}.json`);
  writeFileSync(batchFile, JSON.stringify(batch));
  const lora = loraSpec ? { config: parseLoraFlag(loraSpec) } : undefined; // LoRA hook (bench/train-lora.ts)
  const trainer = new TrainerCore(model.config, model.weights, { loss: 'dpo', beta: 0.1, lr: 1e-5, warmupSteps: 0, threads, maxPositions: length, microBatch, lora, spinning: noSpin ? false : undefined, sharedPrompt });
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
  const peakGflops = await matmulPeakGflops(threads);
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
  const candidates = [process.env.DICE_PYTHON, '/work/.venv/bin/python', '/work/pyenv/bin/python'].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p)) ?? null;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child') return child(process.argv[3], process.argv[4]);
  if (loraSpec) return (await import('./train-lora.ts')).loraBench({ shapes, cases, threads, steps, microBatch, lora: loraSpec, torch: !process.argv.includes('--no-torch') });
  mkdirSync(join('.dice', 'bench'), { recursive: true });
  const py = process.argv.includes('--no-torch') ? null : python();
  console.log(`bench:train  threads=${threads}  steps=${steps} (+1 warm-up)${noSpin ? '  no spinning (both sides)' : ''}  ours: ${sharedPrompt ? 'prompt shared by both responses' : 'two rows per pair (--no-share)'}  onnxruntime ${ort.env.versions.common}  ${py ? `peer: ${py}` : 'no PyTorch peer'}`);
  const rows: string[] = [];
  for (const shape of shapes) {
    for (const kase of cases) {
      const loadBefore = load();
      const childArgs = ['--child', shape, kase, '--threads', String(threads), '--steps', String(steps), '--micro-batch', String(microBatch ?? 0), ...(modelArg ? ['--model', modelArg] : []), ...(noSpin ? ['--no-spin'] : []), ...(sharedPrompt ? [] : ['--no-share'])];
      const run = spawnSync(process.execPath, ['--import', 'tsx', process.argv[1], ...childArgs], { encoding: 'utf8', maxBuffer: 1 << 26 });
      const line = run.stdout.split('\n').find((l) => l.startsWith('RESULT '));
      if (!line) {
        console.error(`${shape} ${kase}: failed\n${run.stderr.split('\n').filter((l) => !l.includes('W:onnxruntime')).slice(-10).join('\n')}`);
        continue;
      }
      const r = JSON.parse(line.slice(7)) as Result & { batchFile: string; modelDir: string };
      const loadOurs = load();
      let torch: { stepSeconds: number; steps: number[]; peakRssMb: number; loss: number; matmulPeakGflops?: number } | null = null;
      let loadTorch = '-';
      if (py) {
        const t = spawnSync(py, ['tools/bench_train_torch.py', '--model', r.modelDir, '--batch', r.batchFile, '--threads', String(threads), '--steps', String(steps), '--micro-batch', String(microBatch ?? 0)], {
          encoding: 'utf8',
          env: noSpin ? { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } : process.env,
        });
        loadTorch = load();
        const tl = t.stdout.split('\n').find((l) => l.startsWith('RESULT '));
        if (tl) torch = JSON.parse(tl.slice(7));
        else console.error(`PyTorch ${shape} ${kase}: failed\n${t.stderr.slice(-1000)}`);
      }
      const share = (gflops: number) => `${((100 * gflops) / r.peakGflops).toFixed(0)}%`;
      const torchGflops = torch ? r.modelGflops * (r.stepSeconds / torch.stepSeconds) : 0;
      rows.push(
        [
          shape.padEnd(13),
          kase.padEnd(7),
          `${r.stepSeconds.toFixed(3)}s`.padStart(9),
          `${r.tokensPerSecond.toFixed(0)}`.padStart(7),
          `${r.modelGflops.toFixed(1)} (${share(r.modelGflops)})`.padStart(12),
          `${r.peakRssMb.toFixed(0)}MB`.padStart(8),
          torch ? `${torch.stepSeconds.toFixed(3)}s`.padStart(9) : '        -',
          torch ? `${torchGflops.toFixed(1)} (${share(torchGflops)})`.padStart(12) : '           -',
          torch ? `${torch.peakRssMb.toFixed(0)}MB`.padStart(8) : '       -',
          torch ? `${(torch.stepSeconds / r.stepSeconds).toFixed(2)}`.padStart(6) : '     -',
          torch ? `${Math.abs(torch.loss - r.loss).toExponential(1)}`.padStart(8) : '        ',
          `${r.peakGflops.toFixed(0)}${torch?.matmulPeakGflops ? `/${torch.matmulPeakGflops.toFixed(0)}` : ''}`.padStart(8),
          `${loadBefore}→${loadOurs}`.padStart(10),
          `${py ? `${loadOurs}→${loadTorch}` : '-'}`.padStart(10),
        ].join('  '),
      );
      console.log(rows[rows.length - 1]);
      console.log(`  steps: ours ${r.steps.map((x) => x.toFixed(2)).join(' ')}${torch ? `  torch ${torch.steps.map((x) => x.toFixed(2)).join(' ')}` : ''}`);
    }
  }
  console.log('\nshape          case         ours  tok/s  GFLOP/s (%pk)  ours RSS      torch  GFLOP/s (%pk)  torch RSS  ratio  |Δloss|  peak ort/torch  load ours  load torch');
  for (const r of rows) console.log(r);
  console.log('ratio = PyTorch step time / ours (≥ 1: ours is faster); step times are medians. Case PxL: P pairs, 2P rows of L tokens.');
  console.log('GFLOP/s: model FLOPs per step / step time, (%pk) its share of the 2048² MatMul peak measured in this run by onnxruntime (peak ort/torch: that peak, and torch\'s own 2048² in its process).');
  console.log('load avg (1 min): before → after each side — the 2 cores are shared, and timings (PyTorch\'s OpenMP most) swing with load.');
}

await main();
