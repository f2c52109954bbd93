/**
 * Profile of one sampling run in this thread (no worker): time split of SamplerCore.generate
 * (onnxruntime runs, host sampling, cache moves) and peak RSS, on the bench model.
 *
 *   node --import tsx bench/engine-profile.ts [--model DIR --threads 2 --batch 16 --new-tokens 128 --repeats 1 --no-spin]
 */
import { join } from 'node:path';
import { SamplerCore } from '../src/engine/sampler-core.ts';
import { loadModel } from '../src/model/load.ts';
import { Rng } from '../src/util/random.ts';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}
const threads = Number(arg('threads', '2'));
const B = Number(arg('batch', '16'));
const newTokens = Number(arg('new-tokens', '128'));
const repeats = Number(arg('repeats', '1'));
const mb = (b: number) => (b / 2 ** 20).toFixed(0);
const modelDir = arg('model', join('.dice', 'bench', 'smollm2-135m'));
const m = loadModel(modelDir);
const spinning = process.argv.includes('--no-spin') ? false : undefined;
const core = await SamplerCore.create(m.config, m.weights, { threads, spinning }, true, modelDir);
console.log(`after create: rss ${mb(process.memoryUsage().rss)} MiB, peak ${mb(process.resourceUsage().maxRSS * 1024)} MiB`);
const rng = new Rng(0);
const requests = Array.from({ length: B }, (_, i) => ({ promptId: `p${i}`, promptTokenIds: Array.from({ length: 32 }, () => 3 + rng.int(997)), k: 1, seed: 1 }));
for (let r = 0; r <= repeats; r++) {
  const t0 = performance.now();
  const res = await core.generate(requests, { temperature: 0.7, topP: 0.9, topK: 0, maxNewTokens: newTokens, eosTokenIds: [], maxBatchRows: B });
  const s = (performance.now() - t0) / 1000;
  const st = core.stats;
  console.log(`${r === 0 ? 'warm-up' : 'run'}: ${((B * newTokens) / s).toFixed(1)} tok/s (${s.toFixed(2)} s; run ${(st.runMs / 1000).toFixed(2)} s, sample ${(st.sampleMs / 1000).toFixed(2)} s, cache ${(st.cacheMs / 1000).toFixed(2)} s), first tokens ${res[0].samples[0].tokenIds.slice(0, 4)}, logProb ${res[0].samples[0].logProb.toFixed(4)}`);
}
console.log(`peak RSS ${mb(process.resourceUsage().maxRSS * 1024)} MiB; load ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')}`);
await core.release();
