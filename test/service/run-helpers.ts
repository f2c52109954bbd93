import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeInitModel } from '../../src/model/init.ts';
import type { Bus } from '../../topics/bus.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { healthTopic, type HealthRecord } from '../../topics/health.ts';
import { topicName } from '../../topics/registry.ts';
import { scoredTopic } from '../../topics/scored.ts';
import { samplesTopic } from '../../topics/samples.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';

export const DICE = fileURLToPath(new URL('../../bin/dice.mjs', import.meta.url));

/** A tiny random policy/reference pair, a prompt file and an offline file in a fresh folder. */
export function makeRunFixture(prompts = 8, offline = 24): { dir: string; args: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'dice-run-'));
  writeInitModel('tiny', join(dir, 'sft'), { seed: 1 });
  writeInitModel('tiny', join(dir, 'base'), { seed: 2 });
  writeFileSync(join(dir, 'prompts.jsonl'), Array.from({ length: prompts }, (_, i) => JSON.stringify({ prompt: `Reverse the word cat${i}.` })).join('\n'));
  writeFileSync(
    join(dir, 'offline.jsonl'),
    Array.from({ length: offline }, (_, i) => JSON.stringify({ prompt: `Add ${i} and 2.`, chosen: `The answer is ${i + 2}.`, rejected: 'No idea.' })).join('\n'),
  );
  // Random tiny models rarely emit EOS: keep truncated responses so rounds have pairs.
  const args = [
    'run', '--policy', join(dir, 'base'), '--ref', join(dir, 'sft'), '--prompts', join(dir, 'prompts.jsonl'), '--offline', join(dir, 'offline.jsonl'),
    '--rounds', '2', '-k', '4', '--steps', '3', '--batch', '4', '--max-new-tokens', '10', '--seed', '7', '--lr', '1e-3', '--warmup', '1',
    '--set', 'filters.dropTruncated=false',
  ];
  return { dir, args };
}

/** `dice serve` on a run fixture's models and offline pairs, writing checkpoints under its folder. */
export function serveArgs(fixture: { dir: string; args: string[] }, bus: string): string[] {
  const flag = (name: string) => fixture.args[fixture.args.indexOf(name) + 1];
  return ['serve', '--policy', flag('--policy'), '--ref', flag('--ref'), '--offline', join(fixture.dir, 'offline.jsonl'), '--out', join(fixture.dir, 'ckpt'), '--bus', bus];
}

/** The serve tests' tiny recipe: rounds of 4 prompts × 4 samples, 2 steps of 4 pairs. */
export const TINY_SERVE_RECIPE = [
  '--prompts-per-round', '4', '-k', '4', '--steps', '2', '--batch', '4', '--max-new-tokens', '8', '--lr', '1e-3', '--warmup', '1',
  '--set', 'filters.dropTruncated=false',
];

export interface DiceRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `killWhen` SIGKILLs it as soon as a log line matches (the crash test). */
export function runCli(args: string[], options: { killWhen?: RegExp; env?: Record<string, string> } = {}): Promise<DiceRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DICE, ...args], { env: { ...process.env, DICE_LOG: 'json', ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (options.killWhen && options.killWhen.test(stderr)) child.kill('SIGKILL');
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

export async function readCheckpoints(bus: Bus, namespace: string | undefined): Promise<Checkpoint[]> {
  return (await readWholeTopic(bus, topicName(namespace, 'checkpoints'), checkpointsTopic)).sort((a, b) => a.version - b.version);
}

/** (round, policyVersion, referenceVersion) of every scored group, and the versions of the samples. */
export async function readLineage(bus: Bus, namespace: string | undefined) {
  const scored = await readWholeTopic(bus, topicName(namespace, 'scored'), scoredTopic);
  const samples = await readWholeTopic(bus, topicName(namespace, 'samples'), samplesTopic);
  return {
    scored: scored.map((g) => ({ round: g.round, policy: g.policyVersion, reference: g.referenceVersion, promptId: g.promptId })),
    samples: samples.map((g) => ({ round: g.round, policy: g.policyVersion, promptId: g.promptId })),
  };
}

/** A long-running CLI process (dice serve) whose log lines can be awaited. */
export class CliProcess {
  readonly child: ChildProcess;
  stderr = '';
  stdout = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [DICE, ...args], { env: { ...process.env, DICE_LOG: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d) => (this.stdout += d));
    this.child.stderr!.on('data', (d) => (this.stderr += d));
    this.exited = new Promise((resolve) => this.child.on('close', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves with the first log line matching, or rejects after `ms` (with the log so far). */
  async waitFor(pattern: RegExp, ms = 120_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = this.stderr.split('\n').find((l) => pattern.test(l));
      if (line) return line;
      if (this.child.exitCode !== null) throw new Error(`process exited (${this.child.exitCode}) before ${pattern}:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/**
 * A health gate this fixture's v1 fails (with makeRunFixture's seed 7, v1 reverses the probe rankings:
 * τ < 0), and that halves the learning rate after a rejection.
 */
export const RANKING_GATE_ARGS = [
  '--set', 'health.heldOutPairs=6', '--set', 'health.probePrompts=2', '--set', 'health.probeSamples=2',
  '--set', 'gate.mode=thresholds', '--set', 'gate.minRankingTau=0', '--set', 'gate.onReject.lrScale=0.25',
];

/**
 * What a rejected v1 must leave on the topics of a 2-round run: v1 published again as rejected with
 * the health record's reasons; round 2 trained from v0 (its reference too) on fresh prompts; no sampler
 * and no scorer ever used v1; and the run's result (`dice run --json`) lists v1 as rejected, apart
 * from the usable versions. Returns v1's health record.
 */
export async function assertRejectedV1NeverUsed(bus: Bus, namespace: string | undefined, runJson: string): Promise<HealthRecord> {
  const health = await readWholeTopic(bus, topicName(namespace, 'health'), healthTopic);
  const v1 = health.find((h) => h.version === 1)!;
  assert.equal(v1.promoted, false, JSON.stringify(v1));
  assert.match(v1.reasons.join('\n'), /ranking consistency \(Kendall τ\) -?[0-9.]+ < 0/);

  const result = JSON.parse(runJson) as { checkpoints: Checkpoint[]; rejected: Checkpoint[] };
  const promoted = health.filter((h) => h.promoted).map((h) => h.version);
  assert.deepEqual(result.checkpoints.map((c) => c.version), [0, ...promoted]);
  assert.deepEqual(result.rejected.map((c) => [c.version, c.gate]), health.filter((h) => !h.promoted).map((h) => [h.version, { promoted: false, reasons: h.reasons }]));
  assert.ok(result.checkpoints.every((c) => c.version === 0 || c.gate?.promoted === true));

  const checkpoints = await readCheckpoints(bus, namespace);
  const v1Records = checkpoints.filter((c) => c.version === 1);
  assert.equal(v1Records.length, 2, 'the train stage publishes v1, the health stage publishes it again with its decision');
  assert.deepEqual(v1Records.at(-1)!.gate, { promoted: false, reasons: v1.reasons });
  const v2 = checkpoints.filter((c) => c.version === 2).at(-1)!;
  assert.deepEqual([v2.parentVersion, v2.referenceVersion], [0, 0]);
  assert.equal(health.find((h) => h.version === 2)!.parentVersion, 0);

  const { scored, samples } = await readLineage(bus, namespace);
  assert.equal(samples.filter((g) => g.round === 2).length, 4);
  for (const g of samples) assert.equal(g.policy, 0, `round ${g.round} sampled with v${g.policy}`);
  for (const g of scored) assert.deepEqual([g.policy, g.reference], [0, -1]);
  assert.equal(new Set(scored.map((g) => g.promptId)).size, 8, 'round 2 on fresh prompts');
  return v1;
}
