/**
 * `dice serve` as three processes — sampler, scorer, trainer — over one bus, each pinned to its own
 * core with taskset where the machine has three (on two: sampler and scorer share core 0, the
 * trainer has core 1), on a small random model for R rounds: wall time (prompts produced → v_R
 * published) and per-role utilisation (busy / round time, from the `serve/role-time` events) for
 * serve.maxStaleness 0 (the paper's on-policy rounds) and 1 (samplers keep sampling while a round trains).
 * With --arena: the arena's bootstrapped model, prompts and D_offline and the `npm start` DICE recipe
 * (2 rounds over its prompt file), and the arena's LC win rate of v_R of both runs (does one step of
 * staleness cost quality?) — minutes, the bootstrap included when it is not cached.
 * Usage: npm run bench:serve [-- --rounds 3 --prompts-per-round 8 --k 4 --max-new-tokens 16 --steps 8 --batch 8 --arch tiny --bus embedded]
 *        npm run bench:serve -- --arena [--cache .dice/testbed]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { writeInitModel } from '../src/model/init.ts';
import { bootstrap } from '../src/testbed/bootstrap.ts';
import { DEFAULT_MAIN_JOB, evaluateModels } from '../src/testbed/main-job.ts';
import { createLogger } from '../src/util/log.ts';
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
    arena: { type: 'boolean', default: false },
    cache: { type: 'string', default: '.dice/testbed' },
  },
});
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
  /** v_R's checkpoint folder. */
  final: string;
}

/** What both runs start from: π_θ(0), π_ref(0), the prompts (at least R+1 rounds' worth for random models), D_offline, the run flags. */
interface Setup {
  label: string;
  policyDir: string;
  refDir: string;
  promptsFile: string;
  offlineFile: string;
  rounds: number;
  promptsPerRound: number;
  flags: string[];
}

function tinySetup(dir: string): Setup {
  const R = Number(a.rounds);
  const N = Number(a['prompts-per-round']);
  writeInitModel(a.arch!, join(dir, 'ref'), { seed: 1 });
  writeInitModel(a.arch!, join(dir, 'policy'), { seed: 2 });
  writeFileSync(join(dir, 'prompts.jsonl'), Array.from({ length: (R + 1) * N }, (_, i) => JSON.stringify({ prompt: `Question ${i}: what is ${i} plus ${i}?` })).join('\n'));
  writeFileSync(join(dir, 'offline.jsonl'), Array.from({ length: 4 * N }, (_, i) => JSON.stringify({ prompt: `Offline ${i}`, chosen: `Answer ${i}.`, rejected: 'I do not know.' })).join('\n'));
  return {
    label: `${a.arch} random weights, ${R} rounds × ${N} prompts × K=${a.k}, ${a['max-new-tokens']} new tokens, ${a.steps} steps × ${a.batch} pairs`,
    policyDir: join(dir, 'policy'),
    refDir: join(dir, 'ref'),
    promptsFile: join(dir, 'prompts.jsonl'),
    offlineFile: join(dir, 'offline.jsonl'),
    rounds: R,
    promptsPerRound: N,
    flags: ['-k', a.k!, '--max-new-tokens', a['max-new-tokens']!, '--steps', a.steps!, '--batch', a.batch!, '--lr', '1e-4', '--warmup', '1', '--set', 'filters.dropTruncated=false', '--set', 'sampling.chatTemplate=false'],
  };
}

async function arenaSetup(): Promise<{ setup: Setup; boot: Awaited<ReturnType<typeof bootstrap>> }> {
  const settings = DEFAULT_MAIN_JOB;
  const boot = await bootstrap(settings.bootstrap, { cacheRoot: a.cache!, log: createLogger({ bench: 'serve' }) });
  const { rounds, ...run } = settings.run as { rounds: number } & Record<string, unknown>;
  const prompts = readFileSync(boot.promptsFile, 'utf8').split('\n').filter((l) => l.trim()).length;
  const N = Math.floor(prompts / rounds);
  return {
    boot,
    setup: {
      label: `the arena (npm start's model and DICE recipe), ${rounds} rounds × ${N} prompts`,
      policyDir: boot.policyDir,
      refDir: boot.refDir,
      promptsFile: boot.promptsFile,
      offlineFile: boot.offlineFile,
      rounds,
      promptsPerRound: N,
      flags: Object.entries(run).flatMap(([k, v]) => ['--set', `${k}=${JSON.stringify(v)}`]),
    },
  };
}

async function runOnce(setup: Setup, maxStaleness: number, dir: string): Promise<Result> {
  const R = setup.rounds;
  const namespace = `bench${maxStaleness}x${Date.now()}`;
  const busUrl = a.bus === 'embedded' ? `embedded:${join(dir, `bus${maxStaleness}.db`)}` : a.bus!;
  const outDir = join(dir, `ckpt${maxStaleness}`);
  const procs: ChildProcess[] = [];
  try {
    const common = [
      '--bus', busUrl, '--namespace', namespace, '--out', outDir, '--prompts-per-round', String(setup.promptsPerRound), '--seed', '7',
      ...setup.flags, '--set', 'threads=1', '--set', `serve.maxStaleness=${maxStaleness}`,
    ];
    const start = (role: Role, extra: string[] = []) => {
      const args = [DICE, 'serve', '--role', role, ...common, ...extra];
      const env = { ...process.env, DICE_LOG: 'json' };
      const child = hasTaskset ? spawn('taskset', ['-c', String(coreOf[role]), process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env }) : spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], env });
      let err = '';
      child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
      child.on('exit', (code) => {
        if (code !== 0 && code !== null) console.error(`${role} exited ${code}:\n${err}`);
      });
      procs.push(child);
    };
    // the trainer publishes π_ref(0), v0 and the offline pairs; the others join the namespace
    start('trainer', ['--policy', setup.policyDir, '--ref', setup.refDir, '--offline', setup.offlineFile]);
    start('sampler');
    start('scorer');
    const bus = await openBus(busUrl);
    try {
      const T = (base: Parameters<typeof topicName>[1]) => topicName(namespace, base);
      while (!(await readWholeTopic(bus, T('checkpoints'), checkpointsTopic)).some((c) => c.version === 0)) await sleep(200);
      await sleep(3000); // the roles open their engines and join their groups
      const produced = spawnSync(process.execPath, [DICE, 'produce', '--topic', T('prompts'), '--file', setup.promptsFile, '--bus', busUrl], { encoding: 'utf8' });
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
      return { maxStaleness, wallSeconds, utilisation, staleness, load, final: join(outDir, `v${R}`) };
    } finally {
      await bus.close();
    }
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

function kind(e: MetricEvent): string {
  return `${e.stage}/${e.type}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

const dir = mkdtempSync(join(tmpdir(), 'bench-serve-'));
try {
  const arena = a.arena ? await arenaSetup() : null;
  const setup = arena?.setup ?? tinySetup(dir);
  console.log(`dice serve, 3 processes over ${a.bus === 'embedded' ? 'one embedded bus' : a.bus}: ${setup.label}, 1 thread each`);
  console.log(hasTaskset ? `pinned (taskset, ${cores} cores): sampler→${coreOf.sampler} scorer→${coreOf.scorer} trainer→${coreOf.trainer}${cores < 3 ? ' (fewer than 3 cores: sampler and scorer share one)' : ''}` : 'not pinned (no taskset)');
  const results: Result[] = [];
  for (const s of [0, 1]) results.push(await runOnce(setup, s, dir));
  console.log('maxStaleness  wall s  sampler  scorer  trainer  load avg (1/5/15 min)  pairs by staleness per round');
  for (const r of results) {
    const pct = (x: number) => `${(100 * x).toFixed(0)} %`.padStart(7);
    console.log(`${String(r.maxStaleness).padEnd(12)}  ${r.wallSeconds.toFixed(1).padStart(6)}  ${pct(r.utilisation.sampler)}  ${pct(r.utilisation.scorer)}  ${pct(r.utilisation.trainer)}  ${r.load.map((x) => x.toFixed(2)).join(' / ').padEnd(21)}  ${r.staleness.join(', ')}`);
  }
  console.log(`wall time ratio (maxStaleness 1 / 0, same run): ${(results[1].wallSeconds / results[0].wallSeconds).toFixed(2)}`);
  if (arena) {
    const models = [
      { model: 'Base (π_θ(0))', variant: 'base', iteration: 0, dir: arena.boot.policyDir },
      ...results.map((r) => ({ model: `serve maxStaleness ${r.maxStaleness} it${setup.rounds}`, variant: `s${r.maxStaleness}`, iteration: setup.rounds, dir: r.final })),
    ];
    const { rows, compare } = await evaluateModels(models, arena.boot.tasks.eval, DEFAULT_MAIN_JOB, createLogger({ bench: 'serve' }, () => undefined));
    console.log('model                          LC win rate   win rate   avg length   (arena held-out set, load avg ' + loadavg().map((x) => x.toFixed(2)).join(' / ') + ')');
    for (const row of rows) console.log(`${row.model.padEnd(30)} ${row.lcWinRate.toFixed(1).padStart(11)} ${row.winRate.toFixed(1).padStart(10)} ${row.avgLength.toFixed(1).padStart(12)}`);
    const d = compare(rows[2], rows[1]);
    console.log(`LC, maxStaleness 1 − 0: ${d.diff.toFixed(1)} ± ${d.stdErr.toFixed(1)} (paired bootstrap s.e., one seed)`);
  } else {
    console.log('arena LC win rate at the end of both: run with --arena (the arena model, its prompts and the npm start recipe; minutes)');
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
