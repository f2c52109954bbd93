// Crash of a consume→produce stage (SIGKILL mid-stream), and a restart of the broker mid-stream:
// no record is lost; duplicates are at most the records in flight at the crash (at-least-once),
// and a dedupe by key downstream removes them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { firstValueFrom, mergeMap, timeout, toArray } from 'rxjs';
import type { Bus, ConsumedRecord } from '../../topics/bus.ts';
import { openKafkaBus, type KafkaBus } from '../../topics/kafka.ts';
import { kafkaTestUrl, startBroker, stopBroker, stopIfStarted } from './kafka-broker.ts';
import { dedupeByKey, runStage, STAGE_MAX_IN_FLIGHT } from './kafka-stage.ts';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const stageScript = fileURLToPath(new URL('./kafka-stage.ts', import.meta.url));
const uniq = (label: string) => `${label}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const busOptions = { sessionTimeoutMs: 3000, heartbeatIntervalMs: 500 };

/**
 * Waits for `check`. Given a stage, fails at once if it died and, on a timeout, says the progress
 * and what the stage printed.
 */
async function until(check: () => Promise<boolean>, ms: number, what: string, watch?: { stage: Stage; progress: () => Promise<string> }): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    const child = watch?.stage.child;
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw new Error(`the stage exited (${child.exitCode ?? child.signalCode}) while waiting for ${what}; its stderr:\n${watch!.stage.stderr()}`);
    }
    if (Date.now() > deadline) {
      const detail = watch ? ` (${await watch.progress()}); the stage's stderr:\n${watch.stage.stderr()}` : '';
      throw new Error(`timed out after ${ms} ms waiting for ${what}${detail}`);
    }
    await sleep(100);
  }
}

async function endOffsetSum(bus: Bus, topic: string): Promise<number> {
  const info = (await bus.listTopics()).find((t) => t.name === topic);
  return info ? info.endOffsets.reduce((a, b) => a + b, 0) : 0;
}

async function readAll(bus: Bus, topic: string): Promise<ConsumedRecord[]> {
  return firstValueFrom(
    bus
      .consume({ groupId: uniq('reader'), topics: [topic], from: { kind: 'beginning' }, untilEnd: true })
      .pipe(mergeMap(async (r) => (await r.commit(), r)), toArray(), timeout(60_000)),
  );
}

/** A stage child process; its stderr is kept so that a failure or a stall can say what it printed. */
interface Stage {
  child: ChildProcess;
  stderr: () => string;
}

function startStage(url: string, input: string, output: string, groupId: string): Promise<Stage> {
  const child = spawn(process.execPath, ['--import', 'tsx', stageScript, url, input, output, groupId], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString('utf8');
    if (err.length > 20_000) err = err.slice(-20_000);
  });
  const stage = { child, stderr: () => err };
  return new Promise((resolve, reject) => {
    child.stdout!.once('data', () => resolve(stage));
    child.once('exit', (code) => reject(new Error(`stage exited early (${code}); its stderr:\n${err}`)));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r())));
}

/** Checks the output against the inputs: nothing lost, duplicates bounded, dedupe exact. */
async function checkOutput(bus: Bus, output: string, ids: string[], maxDuplicates: number): Promise<number> {
  const records = await readAll(bus, output);
  const keys = records.map((r) => r.key!);
  const missing = ids.filter((id) => !keys.includes(id));
  assert.deepEqual(missing, [], 'no input record is lost');
  const duplicates = records.length - new Set(keys).size;
  assert.ok(duplicates <= maxDuplicates, `duplicates (${duplicates}) are at most the records in flight (${maxDuplicates})`);
  const deduped = await firstValueFrom(
    bus
      .consume({ groupId: uniq('dedupe'), topics: [output], from: { kind: 'beginning' }, untilEnd: true })
      .pipe(mergeMap(async (r) => (await r.commit(), r)), dedupeByKey(), toArray(), timeout(60_000)),
  );
  assert.deepEqual(deduped.map((r) => r.key).sort(), [...ids].sort(), 'after dedupe by key: each input exactly once');
  for (const r of deduped) assert.equal(decoder.decode(r.value), `out:in:${r.key}`);
  return duplicates;
}

describe('Kafka stage survives failures', () => {
  const url = kafkaTestUrl();
  after(() => stopIfStarted());

  test('a stage process SIGKILLed mid-stream and restarted loses nothing', async () => {
    const bus = await openKafkaBus(new URL(url), busOptions);
    const children: ChildProcess[] = [];
    try {
      const input = uniq('crash-in');
      const output = uniq('crash-out');
      const groupId = uniq('crash-stage');
      await bus.createTopic(input, { partitions: 3 });
      await bus.createTopic(output, { partitions: 3 });
      // enough records that the kill lands mid-stream even when the stage is quick
      const ids = Array.from({ length: 3000 }, (_, i) => `id-${i}`);
      await bus.produce(input, ids.map((id) => ({ key: id, value: encoder.encode(`in:${id}`) })));

      const progress = async () =>
        `${await endOffsetSum(bus, output)} outputs, ${(await bus.committed(groupId, input)).reduce((a, b) => a + Math.max(b, 0), 0)} inputs committed`;
      const first = await startStage(url, input, output, groupId);
      children.push(first.child);
      await until(async () => (await endOffsetSum(bus, output)) >= 150, 120_000, 'the stage to get going', { stage: first, progress });
      first.child.kill('SIGKILL');
      await exited(first.child);
      const atCrash = await endOffsetSum(bus, output);
      assert.ok(atCrash < ids.length, `killed mid-stream (${atCrash} of ${ids.length} written)`);

      const second = await startStage(url, input, output, groupId);
      children.push(second.child);
      await until(
        async () => (await bus.committed(groupId, input)).reduce((a, b) => a + b, 0) === ids.length,
        120_000,
        'the restarted stage to commit every input',
        { stage: second, progress },
      );
      second.child.kill('SIGTERM');
      await exited(second.child);
      // Each of the 3 partitions may have had STAGE_MAX_IN_FLIGHT records in flight at most in total.
      const duplicates = await checkOutput(bus, output, ids, STAGE_MAX_IN_FLIGHT);
      console.log(`crash: ${atCrash} outputs before SIGKILL, ${duplicates} duplicates after restart, removed by dedupe`);
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await bus.close();
    }
  });

  test('the broker stopped and started mid-stream: the stage resumes without loss', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'dice-kafka-restart-'));
    let bus: KafkaBus | null = null;
    try {
      const ownUrl = startBroker(runDir, 0); // a broker of its own: the shared one is left alone
      bus = await openKafkaBus(new URL(ownUrl), busOptions);
      const input = uniq('restart-in');
      const output = uniq('restart-out');
      const groupId = uniq('restart-stage');
      await bus.createTopic(input, { partitions: 2 });
      await bus.createTopic(output, { partitions: 2 });
      const ids = Array.from({ length: 400 }, (_, i) => `id-${i}`);
      await bus.produce(input, ids.slice(0, 200).map((id) => ({ key: id, value: encoder.encode(`in:${id}`) })));
      const stage = runStage(bus, input, output, groupId);
      const b = bus;
      await until(async () => (await endOffsetSum(b, output)) >= 50, 60_000, 'the stage to get going');

      stopBroker(runDir);
      await sleep(1000);
      startBroker(runDir);
      await bus.produce(input, ids.slice(200).map((id) => ({ key: id, value: encoder.encode(`in:${id}`) })));
      await until(
        async () => (await b.committed(groupId, input)).reduce((a, c) => a + Math.max(c, 0), 0) === ids.length,
        120_000,
        'the stage to commit every input after the restart',
      );
      stage.unsubscribe();
      const duplicates = await checkOutput(bus, output, ids, 2 * STAGE_MAX_IN_FLIGHT);
      console.log(`broker restart: ${duplicates} duplicates, removed by dedupe`);
    } finally {
      await bus?.close();
      stopBroker(runDir);
      rmSync(runDir, { recursive: true, force: true });
    }
  });
});
