/**
 * One DICE round on the embedded bus, timed per stage: wall time vs engine time (model loading,
 * sampling, scoring, training). The difference is the bus, encoding and orchestration; target
 * (issue 5): ≤ 5% of the round's wall time.
 * Usage: npm run bench:loop [-- --arch tiny|smollm2-135m --prompts 32 --k 16 --max-new-tokens 64 --steps 20 --batch 16]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadRunConfig } from '../src/config/schema.ts';
import { writeInitModel } from '../src/model/init.ts';
import { MetricsEmitter } from '../src/service/metrics.ts';
import { runDice } from '../src/service/run.ts';
import { createLogger } from '../src/util/log.ts';
import { openBus } from '../topics/open-bus.ts';

const { values: a } = parseArgs({
  options: {
    arch: { type: 'string', default: 'tiny' },
    prompts: { type: 'string', default: '32' },
    k: { type: 'string', default: '16' },
    'max-new-tokens': { type: 'string', default: '64' },
    steps: { type: 'string', default: '20' },
    batch: { type: 'string', default: '16' },
    threads: { type: 'string', default: '2' },
  },
});
const dir = mkdtempSync(join(tmpdir(), 'bench-loop-'));
try {
  writeInitModel(a.arch!, join(dir, 'ref'), { seed: 1 });
  writeInitModel(a.arch!, join(dir, 'policy'), { seed: 2 });
  const n = Number(a.prompts);
  writeFileSync(join(dir, 'prompts.jsonl'), Array.from({ length: n }, (_, i) => JSON.stringify({ prompt: `Question ${i}: what is ${i} plus ${i}?` })).join('\n'));
  writeFileSync(join(dir, 'offline.jsonl'), Array.from({ length: 4 * n }, (_, i) => JSON.stringify({ prompt: `Offline ${i}`, chosen: `Answer ${i}.`, rejected: 'I do not know.' })).join('\n'));
  const config = loadRunConfig(undefined, {
    rounds: 1,
    'sampling.k': Number(a.k),
    'sampling.maxNewTokens': Number(a['max-new-tokens']),
    'sampling.chatTemplate': false,
    'filters.dropTruncated': false, // random weights rarely emit EOS
    'train.steps': Number(a.steps),
    'train.batch': Number(a.batch),
    'train.lr': 1e-4,
    'train.warmupSteps': 1,
    threads: Number(a.threads),
  });
  const bus = await openBus(`embedded:${join(dir, 'bus.db')}`);
  const log = createLogger({ bench: 'loop' }, () => undefined);
  const t0 = performance.now();
  const result = await runDice({
    bus, namespace: 'bench', config, policyDir: join(dir, 'policy'), refDir: join(dir, 'ref'),
    promptsFile: join(dir, 'prompts.jsonl'), offlineFile: join(dir, 'offline.jsonl'), outDir: join(dir, 'out'), log, metrics: new MetricsEmitter(bus, 'bench'),
  });
  const total = (performance.now() - t0) / 1000;
  await bus.close();
  const r = result.rounds[0];
  console.log(`DICE round on ${a.arch}: ${n} prompts × K=${a.k}, ${a['max-new-tokens']} new tokens, ${a.steps} steps × ${a.batch} pairs, ${a.threads} threads`);
  console.log('stage    wall s   engine s   other s');
  let wall = 0;
  let engine = 0;
  for (const stage of Object.keys(r.seconds)) {
    const w = r.seconds[stage];
    const e = r.engineSeconds[stage] ?? 0;
    wall += w;
    engine += e;
    console.log(`${stage.padEnd(8)} ${w.toFixed(2).padStart(7)} ${e.toFixed(2).padStart(10)} ${(w - e).toFixed(2).padStart(9)}`);
  }
  const other = total - engine;
  console.log(`round    ${total.toFixed(2).padStart(7)} ${engine.toFixed(2).padStart(10)} ${other.toFixed(2).padStart(9)}   (setup outside stages: ${(total - wall).toFixed(2)} s)`);
  console.log(`bus, encoding and orchestration: ${((100 * other) / total).toFixed(1)}% of the round (target ≤ 5%)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
