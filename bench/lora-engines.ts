/**
 * bench:lora-engines — how samplers and scorers should run a LoRA policy: base + adapter terms in
 * the graph (two extra small Gemms per adapted Linear) or the adapter merged into the weights (one
 * host-side fold, then the plain graph). Same random SmolLM2-shaped weights and adapter for both.
 *
 *   npm run bench:lora-engines [-- --shape smollm2-135m --lora r=16,alpha=32,targets=q,k,v,o,gate,up,down --batch 16 --past 64 --threads 2 --reps 5]
 *
 * Prints the decode-step time (sampling: B rows, one new token on a past of P), the teacher-forced
 * scoring time (B/2 rows of 2P tokens) and the merge time; the two sessions are timed in passes
 * A B A B, so load drift on the shared machine hits both alike. Medians.
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

/**
 * Times the two sessions in passes A B A B (each session created, warmed up, run reps times and
 * released in its pass, so only one is alive at a time: lower peak memory), checks they agree.
 */
async function timeAlternately(kind: string, build: (w: Weights, withAdapter: boolean) => ReturnType<typeof buildDecodeStepGraph>, feeds: Record<string, ort.Tensor>): Promise<void> {
  const times = { adapter: [] as number[], merged: [] as number[] };
  const first = new Map<string, Float32Array>();
  for (let pass = 0; pass < 2; pass++) {
    for (const name of ['adapter', 'merged'] as const) {
      const s = await session(build(name === 'adapter' ? base : merged, name === 'adapter'));
      const warm = await s.run(feeds);
      if (pass === 0) first.set(name, (warm[s.outputNames[0]].data as Float32Array).slice());
      for (let r = 0; r < reps; r++) {
        const t = performance.now();
        await s.run(feeds);
        times[name].push((performance.now() - t) / 1000);
      }
      await s.release();
    }
  }
  const out = first.get('adapter')!;
  const ref = first.get('merged')!;
  let diff = 0;
  for (let i = 0; i < out.length; i++) diff = Math.max(diff, Math.abs(out[i] - ref[i]));
  const a = median(times.adapter);
  const m = median(times.merged);
  console.log(`${kind.padEnd(34)} base+adapter ${a.toFixed(4)}s   merged ${m.toFixed(4)}s   adapter/merged ${(a / m).toFixed(2)}   max |Δ| ${diff.toExponential(1)}   load ${load()}   peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
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
const S = Math.max(1, B / 2); // logits [S, T, V]: kept small
await timeAlternately(`teacher-forced (scoring) ${S}×${T}`, (w, a) => buildTeacherForcedGraph(config, w, a ? adapterOpt : {}), {
  input_ids: new ort.Tensor('int64', ids(S * T), [S, T]),
  attention_mask: new ort.Tensor('int64', new BigInt64Array(S * T).fill(1n), [S, T]),
});
console.log('adapter/merged > 1: merged is faster. Both sessions hold the same base; merged costs the one fold above when a policy is loaded.');
