/**
 * `dice serve` as three processes — sampler, scorer, trainer — over one bus, each pinned to its own
 * core with taskset where the machine has three (on two: sampler and scorer share core 0, the
 * trainer has core 1), on a small random model for R rounds: wall time (prompts produced → v_R
 * published) and per-role utilisation (busy / round time, from the `serve/role-time` events) for
 * serve.maxStaleness 0 (the paper's on-policy rounds) and 1 (samplers keep sampling while a round trains).
 * Usage: npm run bench:serve [-- --rounds 3 --prompts-per-round 8 --k 4 --max-new-tokens 16 --steps 8 --batch 8 --arch tiny --bus embedded]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { writeInitModel } from '../src/model/init.ts';
import { readWholeTopic } from '../src/service/stage-runner.ts';
import { checkpointsTopic } from '../topics/checkpoints.ts';
import { metricsTopic, type MetricEvent } from '../topics/metrics.ts';
import { openBus } from '../topics/open-bus.ts';
import { topicName } from '../topics/registry.ts';

const { values: a } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'prompts-per-round': { type: 'string', default: '8' },
    k: { type: 'string', default: '4' },
    'max-new-tokens': { type: 'string', default: '16' },
    steps: { type: 'string', default: '8' },
    batch: { type: 'string', default: '8' },
    arch: { type: 'string', default: 'tiny' },
    /** embedded (a fresh SQLite file per run) or a kafka://HOST:PORT URL */
    bus: { type: 'string', default: 'embedded' },
  },
});
const R = Number(a.rounds);
const N = Number(a['prompts-per-round']);
const DICE = fileURLToPath(new URL('../bin/dice.mjs', import.meta.url));
const ROLES = ['sampler', 'scorer', 'trainer'] as const;
type Role = (typeof ROLES)[number];
const hasTaskset = spawnSync('taskset', ['-V']).status === 0;
const cores = cpus().length;
const coreOf: Record<Role, number> = cores >= 3 ? { sampler: 0, scorer: 1, trainer: 2 } : { sampler: 0, scorer: 0, trainer: Math.min(1, cores - 1) };

interface Result {
  maxStaleness: number;
  wallSeconds: number;
  utilisation: Record<Role, number>;
  staleness: string[];
  load: number[];
}

async function runOnce(maxStaleness: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-serve-'));
  const namespace = `bench${maxStaleness}x${Date.now()}`;
  const busUrl = a.bus === 'embedded' ? `embedded:${join(dir, 'bus.db')}` : a.bus!;
  const procs: ChildProcess[] = [];
  try {
    writeInitModel(a.arch!, join(dir, 'ref'), { seed: 1 });
    writeInitModel(a.arch!, join(dir, 'policy'), { seed: 2 });
    // enough prompts for R rounds and the rounds samplers may run ahead by
    writeFileSync(join(dir, 'prompts.jsonl'), Array.from({ length: (R + 1) * N }, (_, i) => JSON.stringify({ prompt: `Question ${i}: what is ${i} plus ${i}?` })).join('\n'));
    writeFileSync(join(dir, 'offline.jsonl'), Array.from({ length: 4 * N }, (_, i) => JSON.stringify({ prompt: `Offline ${i}`, chosen: `Answer ${i}.`, rejected: 'I do not know.' })).join('\n'));
    const common = [
      '--bus', busUrl, '--namespace', namespace, '--out', join(dir, 'ckpt'), '--prompts-per-round', String(N), '-k', a.k!, '--max-new-tokens', a['max-new-tokens']!,
      '--steps', a.steps!, '--batch', a.batch!, '--lr', '1e-4', '--warmup', '1', '--seed', '7',
      '--set', 'filters.dropTruncated=false', '--set', 'sampling.chatTemplate=false', '--set', 'threads=1', '--set', `serve.maxStaleness=${maxStaleness}`,
    ];
    const start = (role: Role, extra: string[] = []) => {
      const args = [DICE, 'serve', '--role', role, ...common, ...extra];
      const child = hasTaskset ? spawn('taskset', ['-c', String(coreOf[role]), process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DICE_LOG: 'json' } }) : spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DICE_LOG: 'json' } });
      let err = '';
      child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
      child.on('exit', (code) => {
        if (code !== 0 && code !== null) console.error(`${role} exited ${code}:\n${err}`);
      });
      procs.push(child);
    };
    // the trainer publishes π_ref(0), v0 and the offline pairs; the others join the namespace
    start('trainer', ['--policy', join(dir, 'policy'), '--ref', join(dir, 'ref'), '--offline', join(dir, 'offline.jsonl')]);
    start('sampler');
    start('scorer');
    const bus = await openBus(busUrl);
    try {
      const T = (base: Parameters<typeof topicName>[1]) => topicName(namespace, base);
      while (!(await readWholeTopic(bus, T('checkpoints'), checkpointsTopic)).some((c) => c.version === 0)) await sleep(200);
      await sleep(3000); // the roles open their engines and join their groups
      const produced = spawnSync(process.execPath, [DICE, 'produce', '--topic', T('prompts'), '--file', join(dir, 'prompts.jsonl'), '--bus', busUrl], { encoding: 'utf8' });
      if (produced.status !== 0) throw new Error(produced.stderr);
      const t0 = performance.now();
      while (!(await readWholeTopic(bus, T('checkpoints'), checkpointsTopic)).some((c) => c.version === R)) await sleep(200);
      const wallSeconds = (performance.now() - t0) / 1000;
      const load = loadavg();
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)))));
      const events = await readWholeTopic(bus, T('metrics'), metricsTopic);
      const utilisation = {} as Record<Role, number>;
      for (const role of ROLES) {
        const times = events.filter((e) => kind(e) === 'serve/role-time' && e.role === role && typeof e.round === 'number' && e.round <= R);
        const busy = times.reduce((s, e) => s + Number(e.busySeconds), 0);
        const total = times.reduce((s, e) => s + Number(e.seconds), 0);
        utilisation[role] = total > 0 ? busy / total : NaN;
      }
      const staleness = events.filter((e) => kind(e) === 'train/staleness' && typeof e.round === 'number' && e.round <= R).sort((x, y) => Number(x.round) - Number(y.round)).map((e) => `r${e.round} ${e.histogram}`);
      return { maxStaleness, wallSeconds, utilisation, staleness, load };
    } finally {
      await bus.close();
    }
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function kind(e: MetricEvent): string {
  return `${e.stage}/${e.type}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

console.log(`dice serve, 3 processes over ${a.bus === 'embedded' ? 'one embedded bus' : a.bus}: ${a.arch}, ${R} rounds × ${N} prompts × K=${a.k}, ${a['max-new-tokens']} new tokens, ${a.steps} steps × ${a.batch} pairs, 1 thread each`);
console.log(hasTaskset ? `pinned (taskset, ${cores} cores): sampler→${coreOf.sampler} scorer→${coreOf.scorer} trainer→${coreOf.trainer}${cores < 3 ? ' (fewer than 3 cores: sampler and scorer share one)' : ''}` : 'not pinned (no taskset)');
const results: Result[] = [];
for (const s of [0, 1]) results.push(await runOnce(s));
console.log('maxStaleness  wall s  sampler  scorer  trainer  load avg (1/5/15 min)  pairs by staleness per round');
for (const r of results) {
  const pct = (x: number) => `${(100 * x).toFixed(0)} %`.padStart(7);
  console.log(`${String(r.maxStaleness).padEnd(12)}  ${r.wallSeconds.toFixed(1).padStart(6)}  ${pct(r.utilisation.sampler)}  ${pct(r.utilisation.scorer)}  ${pct(r.utilisation.trainer)}  ${r.load.map((x) => x.toFixed(2)).join(' / ').padEnd(21)}  ${r.staleness.join(', ')}`);
}
console.log(`wall time ratio (maxStaleness 1 / 0, same run): ${(results[1].wallSeconds / results[0].wallSeconds).toFixed(2)}`);
console.log('arena LC win rate at the end of both: not measured here (the arena evaluates `dice run` checkpoints of its bootstrapped model; minutes per run on this machine)');
