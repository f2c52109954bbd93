import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeInitModel } from '../../src/model/init.ts';
import type { Bus } from '../../topics/bus.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
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
