/**
 * Profile of one DPO train step (its grads graph run) with onnxruntime's profiler: kernel time per
 * op type, grouped by phase (forward / backward, from the order the graph emits them), of the last
 * of the timed steps, the host AdamW update's time, and the step's peak RSS.
 *
 *   node --import tsx bench/train-profile.ts [--threads 2 --case 2x256 --steps 1 --top 25 --model DIR --no-share]
 *
 * --no-share: two rows per pair (the trainer's default runs each prompt once for both responses).
 *
 * Default model: the random SmolLM2-135M-shaped init of bench:train (.dice/bench/smollm2-135m).
 * Use a small case (2x256, 8x64) for iteration; 8x256 needs ~14 GB (run it under the bigmem lock).
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { TrainerCore } from '../src/engine/trainer-core.ts';
import { buildGradsGraph, trainGraphPhases, type TrainPhase } from '../src/engine/trainer-graph.ts';
import type { PreferencePair } from '../src/engine/trainer-batch.ts';
import { loadModel } from '../src/model/load.ts';
import { benchModelDir, makeBenchBatch } from './train-batch.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const threads = Number(arg('threads', '2'));
const [pairs, length] = arg('case', '2x256').split('x').map(Number);
const steps = Number(arg('steps', '1'));
const top = Number(arg('top', '25'));
const dir = arg('model', '') || benchModelDir('smollm2-135m');

interface ProfileEvent {
  cat: string;
  name: string;
  ts: number;
  dur: number;
  args?: { op_name?: string };
}

const model = loadModel(dir);
const outDir = join('.dice', 'bench', 'profile');
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const sharedPrompt = !process.argv.includes('--no-share');
const options = { loss: 'dpo' as const, beta: 0.1, lr: 1e-5, warmupSteps: 0, threads, maxPositions: length, sharedPrompt };
const trainer = new TrainerCore(model.config, model.weights, { ...options, profileFilePrefix: join(outDir, 'train') });
model.weights.clear();
const batch = makeBenchBatch(model.config, pairs, length);
const ppairs: PreferencePair[] = batch.promptTokenIds.map((p, i) => ({
  promptTokenIds: p,
  chosenTokenIds: batch.chosen[i],
  rejectedTokenIds: batch.rejected[i],
  refChosenLogp: batch.refChosen[i],
  refRejectedLogp: batch.refRejected[i],
}));
const loadBefore = loadavg()[0];
const times: number[] = [];
let optimizerSeconds = 0;
for (let s = 0; s <= steps; s++) {
  const m = await trainer.step({ kind: 'preference', pairs: ppairs });
  times.push(m.seconds);
  optimizerSeconds = m.optimizerSeconds;
}
const loadAfter = loadavg()[0];
await trainer.release();
const peakRss = process.resourceUsage().maxRSS / 1024;

const phases = trainGraphPhases(
  buildGradsGraph({ config: model.config, dtype: 'float32', loss: 'dpo', beta: options.beta, maxPositions: length, sharedPrompt }),
);
const file = readdirSync(outDir).find((f) => f.startsWith('train-grads') && f.endsWith('.json'));
if (!file) throw new Error(`no profile written under ${outDir}`);
const events = JSON.parse(readFileSync(join(outDir, file), 'utf8')) as ProfileEvent[];
const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run');
const last = runs[runs.length - 1];
const inLast = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= last.ts && e.ts <= last.ts + last.dur);

// a fused node keeps its first node's name with a suffix; unknown names count as 'other'
const phaseOf = (node: string): TrainPhase | 'other' => {
  const base = node.replace(/_kernel_time$/, '');
  const m = phases.get(base) ?? phases.get(base.replace(/_(fusion|Fusion|token_\d+).*$/, ''));
  if (m) return m;
  const idx = /^[A-Za-z]+_(\d+)/.exec(base);
  if (idx) for (const [name, p] of phases) if (name.endsWith(`_${idx[1]}`)) return p;
  return 'other';
};
const byPhase = new Map<string, Map<string, { us: number; count: number }>>();
let totalUs = 0;
for (const e of inLast) {
  const phase = phaseOf(e.name);
  const op = e.args?.op_name ?? '?';
  const m = byPhase.get(phase) ?? new Map();
  byPhase.set(phase, m);
  const cur = m.get(op) ?? { us: 0, count: 0 };
  cur.us += e.dur;
  cur.count += 1;
  m.set(op, cur);
  totalUs += e.dur;
}
const s = (us: number) => (us / 1e6).toFixed(2);
console.log(`train step profile  case ${pairs}x${length}  threads ${threads}  model ${dir}  ${sharedPrompt ? 'prompt shared' : 'two rows per pair'}`);
console.log(`steps (first = warm-up): ${times.map((t) => t.toFixed(2)).join(' ')} s; profiled run ${s(last.dur)} s, kernels ${s(totalUs)} s, host AdamW ${optimizerSeconds.toFixed(2)} s; peak RSS ${peakRss.toFixed(0)} MB; load ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)}`);
for (const [phase, ops] of [...byPhase].sort((a, b) => sumUs(b[1]) - sumUs(a[1]))) {
  const pus = sumUs(ops);
  console.log(`\n${phase.padEnd(10)} ${s(pus)} s (${((100 * pus) / totalUs).toFixed(0)}%)`);
  for (const [op, v] of [...ops].sort((a, b) => b[1].us - a[1].us).slice(0, top)) {
    console.log(`  ${op.padEnd(22)} ${s(v.us).padStart(7)} s  ${((100 * v.us) / totalUs).toFixed(1).padStart(5)}%  ×${v.count}`);
  }
}

function sumUs(ops: Map<string, { us: number }>): number {
  let t = 0;
  for (const v of ops.values()) t += v.us;
  return t;
}
