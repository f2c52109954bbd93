/**
 * bench:lora-engines — how samplers and scorers should run a LoRA policy: base + adapter terms in
 * the graph (two extra small Gemms per adapted Linear) or the adapter merged into the weights (one
 * host-side fold, then the plain graph). Same random SmolLM2-shaped weights and adapter for both.
 *
 *   npm run bench:lora-engines [-- --shape smollm2-135m --lora r=16,alpha=32,targets=q,k,v,o,gate,up,down --batch 16 --past 64 --threads 2 --reps 5]
 *
 * Prints the decode-step time (sampling: B rows, one new token on a past of P), the teacher-forced
 * scoring time (B rows of 2P tokens) and the merge time; the two sessions are timed alternately,
 * rep by rep, so load drift on the shared machine hits both alike. Medians.
 */
import { availableParallelism, loadavg } from 'node:os';
import * as ort from 'onnxruntime-node';
import { parseLoraFlag } from '../src/cli/lora-flag.ts';
import { initWeights } from '../src/model/init.ts';
import { buildDecodeStepGraph, buildTeacherForcedGraph, pastKeyName, pastValueName } from '../src/model/llama-graph.ts';
import { initAdapter, loraParameterShapes, mergeAdapter } from '../src/model/lora.ts';
import { loraInitializers } from '../src/model/lora-graph.ts';
import { namedShape } from '../src/model/named-shapes.ts';
import type { Weights } from '../src/model/tensor.ts';
import { serializeModel } from '../src/onnx/builder.ts';
import { createSession } from '../src/onnx/session.ts';
import { Rng } from '../src/util/random.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const shape = arg('shape', 'smollm2-135m');
const lora = parseLoraFlag(arg('lora', 'r=16,alpha=32,targets=q,k,v,o,gate,up,down'));
const B = Number(arg('batch', '16'));
const P = Number(arg('past', '64'));
const threads = Number(arg('threads', String(Math.min(availableParallelism(), 2))));
const reps = Number(arg('reps', '5'));
const load = () => loadavg()[0].toFixed(1);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const config = namedShape(shape).config;
const base = initWeights(config, { seed: 1 });
// a trained-looking adapter: PEFT's A, and B non-zero (B = 0 would make the terms trivially zero)
const adapter = initAdapter(config, lora, 2);
const rng = new Rng(3);
for (const [name, t] of adapter) if (name.includes('lora_B')) (t.data as Float32Array).forEach((_, i, a) => (a[i] = 0.01 * rng.normal()));
const t0 = performance.now();
const merged = mergeAdapter(config, base, { lora, weights: adapter, baseModel: null });
const mergeSeconds = (performance.now() - t0) / 1000;
const trainable = [...loraParameterShapes(config, lora).values()].reduce((s, sh) => s + sh[0] * sh[1], 0);
console.log(`bench:lora-engines  ${shape}  lora r=${lora.r} alpha=${lora.alpha} targets ${lora.targets.join(',')} (${trainable.toLocaleString('en-US')} adapter values)  threads=${threads}  onnxruntime ${ort.env.versions.common}  load ${load()}`);
console.log(`merge (host fold of every adapted Linear): ${mergeSeconds.toFixed(2)}s`);

const ids = (n: number) => BigInt64Array.from({ length: n }, () => BigInt(3 + rng.int(1000)));
const session = (graph: ReturnType<typeof buildDecodeStepGraph>) => createSession(serializeModel(graph), { threads });
const adapterOpt = { adapter: loraInitializers(config, { lora, weights: adapter }) };

async function timeAlternately(kind: string, build: (w: Weights, withAdapter: boolean) => ReturnType<typeof buildDecodeStepGraph>, feeds: Record<string, ort.Tensor>): Promise<void> {
  const withAdapter = await session(build(base, true));
  const plain = await session(build(merged, false));
  const check = [await withAdapter.run(feeds), await plain.run(feeds)]; // warm-up, and the two agree
  const out = check[0][withAdapter.outputNames[0]].data as Float32Array;
  const ref = check[1][plain.outputNames[0]].data as Float32Array;
  let diff = 0;
  for (let i = 0; i < out.length; i++) diff = Math.max(diff, Math.abs(out[i] - ref[i]));
  const times = { adapter: [] as number[], merged: [] as number[] };
  for (let r = 0; r < reps; r++) {
    for (const [name, s] of [['adapter', withAdapter], ['merged', plain]] as const) {
      const t = performance.now();
      await s.run(feeds);
      times[name].push((performance.now() - t) / 1000);
    }
  }
  const a = median(times.adapter);
  const m = median(times.merged);
  console.log(`${kind.padEnd(34)} base+adapter ${a.toFixed(4)}s   merged ${m.toFixed(4)}s   adapter/merged ${(a / m).toFixed(2)}   max |Δ| ${diff.toExponential(1)}   load ${load()}`);
  await withAdapter.release();
  await plain.release();
}

const kv = config.numKvHeads;
const hd = config.headDim;
const decodeFeeds: Record<string, ort.Tensor> = {
  input_ids: new ort.Tensor('int64', ids(B), [B, 1]),
  position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: B }, () => BigInt(P)), [B, 1]),
  attention_mask: new ort.Tensor('int64', new BigInt64Array(B * (P + 1)).fill(1n), [B, P + 1]),
};
for (let i = 0; i < config.numLayers; i++) {
  const cache = () => new ort.Tensor('float32', Float32Array.from({ length: B * kv * P * hd }, () => 0.1 * rng.normal()), [B, kv, P, hd]);
  decodeFeeds[pastKeyName(i)] = cache();
  decodeFeeds[pastValueName(i)] = cache();
}
await timeAlternately(`decode step (sampling) B=${B} past=${P}`, (w, a) => buildDecodeStepGraph(config, w, { cache: 'append', ...(a ? adapterOpt : {}) }), decodeFeeds);
const T = 2 * P;
await timeAlternately(`teacher-forced (scoring) ${B}×${T}`, (w, a) => buildTeacherForcedGraph(config, w, a ? adapterOpt : {}), {
  input_ids: new ort.Tensor('int64', ids(B * T), [B, T]),
  attention_mask: new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]),
});
console.log('adapter/merged > 1: merged is faster. Both sessions hold the same base; merged costs the one fold above when a policy is loaded.');
