/**
 * Where a decode step's time goes, per ONNX op type: onnxruntime's profiler on the sampler's decode
 * graph (cache 'append') at batch B with C cached columns, `steps` runs after a warm-up; prints the
 * summed node time per op type and the share of the step. Also times the host sampling of the
 * step's logits (sampleToken + logSumExp per row), for the split between graph and host.
 *
 *   node --import tsx bench/engine-op-profile.ts [--model DIR --threads 2 --batch 64 --past 64 --steps 3 --no-spin]
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildDecodeStepGraph, pastKeyName, pastValueName } from '../src/model/llama-graph.ts';
import { loadModel } from '../src/model/load.ts';
import { serializeModel } from '../src/onnx/builder.ts';
import { logSumExp, sampleToken } from '../src/engine/sampling.ts';
import { Rng } from '../src/util/random.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const modelDir = arg('model', join('.dice', 'bench', 'smollm2-135m'));
const threads = Number(arg('threads', '2'));
const B = Number(arg('batch', '64'));
const P = Number(arg('past', '64'));
const steps = Number(arg('steps', '3'));
const { config, weights } = loadModel(modelDir);
const bytes = serializeModel(buildDecodeStepGraph(config, weights, { cache: 'append' }));
weights.clear();
const prefix = join('/tmp', `dice-op-profile-${process.pid}`);
const session = await ort.InferenceSession.create(bytes, {
  executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  enableProfiling: true, profileFilePrefix: prefix,
  ...(process.argv.includes('--no-spin') ? { extra: { session: { intra_op: { allow_spinning: '0' } } } } : {}),
});
const rng = new Rng(1);
const kv = () => new ort.Tensor('float32', Float32Array.from({ length: B * config.numKvHeads * P * config.headDim }, () => rng.normal() * 0.5), [B, config.numKvHeads, P, config.headDim]);
const feeds: Record<string, ort.Tensor> = {
  input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: B }, () => BigInt(3 + rng.int(997))), [B, 1]),
  position_ids: new ort.Tensor('int64', new BigInt64Array(B).fill(BigInt(P)), [B, 1]),
  attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (P + 1)).fill(1n), [B, P + 1]),
};
for (let i = 0; i < config.numLayers; i++) {
  feeds[pastKeyName(i)] = kv();
  feeds[pastValueName(i)] = kv();
}
await session.run(feeds); // warm-up
let logits = new Float32Array(0) as Float32Array<ArrayBufferLike>;
const t0 = performance.now();
for (let s = 0; s < steps; s++) logits = (await session.run(feeds)).logits.data as Float32Array;
const stepMs = (performance.now() - t0) / steps;
const file = session.endProfiling() as unknown as string | undefined;
const V = config.vocabSize;
const t1 = performance.now();
const r = new Rng(3);
for (let b = 0; b < B; b++) {
  const row = logits.subarray(b * V, (b + 1) * V);
  const token = sampleToken(row, { temperature: 0.7, topP: 0.9, topK: 0 }, r);
  void (row[token] - logSumExp(row));
}
const hostMs = performance.now() - t1;

const events = JSON.parse(readFileSync(file ?? `${prefix}.json`, 'utf8')) as Array<{ cat: string; name: string; dur: number; args?: { op_name?: string } }>;
const byOp = new Map<string, number>();
let total = 0;
for (const e of events) {
  if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
  const op = e.args?.op_name ?? '?';
  byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000 / (steps + 1));
  total += e.dur / 1000 / (steps + 1);
}
rmSync(file ?? `${prefix}.json`, { force: true });
console.log(`decode step, batch ${B}, ${P} cached columns, ${threads} threads: ${stepMs.toFixed(0)} ms per step (wall), ${total.toFixed(0)} ms in kernels; host sampling of its ${B} rows ${hostMs.toFixed(0)} ms`);
for (const [op, ms] of [...byOp].sort((a, b) => b[1] - a[1]).slice(0, 14)) console.log(`  ${op.padEnd(22)} ${ms.toFixed(1).padStart(8)} ms  ${((100 * ms) / total).toFixed(1).padStart(5)}%`);
console.log(`load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`);
