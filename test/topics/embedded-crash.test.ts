import test from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firstValueFrom, map, toArray } from 'rxjs';
import { openEmbeddedBus } from '../../topics/embedded.ts';

const dir = mkdtempSync(join(tmpdir(), 'dice-crash-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const N = 1500;

function startChild(path: string): ChildProcess {
  const c = spawn(process.execPath, ['--import', 'tsx', 'test/topics/embedded-crash-child.ts', path, String(N)], { stdio: ['ignore', 'pipe', 'inherit'] });
  return c;
}

async function outCount(path: string): Promise<number> {
  const bus = await openEmbeddedBus(path);
  try {
    const out = (await bus.listTopics()).find((t) => t.name === 'out');
    return out ? out.endOffsets.reduce((s, n) => s + n, 0) : 0;
  } finally {
    await bus.close();
  }
}

async function waitForOut(path: string, atLeast: number, child: ChildProcess): Promise<number> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const n = await outCount(path);
    if (n >= atLeast) return n;
    if (child.exitCode !== null) throw new Error(`child exited early with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${atLeast} output records (have ${n})`);
    await new Promise((r) => setTimeout(r, 15));
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((r) => child.once('exit', (code) => r(code)));
}

test('a stage SIGKILLed mid-stream and restarted loses no record and duplicates none (produceAndCommit)', async () => {
  const path = join(dir, 'bus.db');
  const kills: number[] = [];
  for (const killAt of [150, 700]) {
    const child = startChild(path);
    await waitForOut(path, killAt, child);
    child.kill('SIGKILL');
    await exited(child);
    kills.push(await outCount(path));
  }
  assert.ok(kills[0] < N && kills[1] < N, `each kill landed mid-stream (output counts at kill: ${kills})`);
  const last = startChild(path);
  assert.equal(await exited(last), 0);

  const bus = await openEmbeddedBus(path);
  try {
    const read = async (topic: string) =>
      firstValueFrom(
        bus.consume({ groupId: `check-${topic}`, topics: [topic], untilEnd: true }).pipe(
          map((r) => {
            void r.commit(); // untilEnd completes once everything delivered is committed
            return new TextDecoder().decode(r.value);
          }),
          toArray(),
        ),
      );
    const input = await read('in');
    const output = await read('out');
    const expectedIn = Array.from({ length: N }, (_, i) => `m${i}`);
    assert.deepEqual([...input].sort(), [...expectedIn].sort(), 'the producer wrote each input once');
    assert.equal(new Set(output).size, output.length, 'no output record is duplicated');
    assert.deepEqual([...output].sort(), expectedIn.map((m) => `${m}!`).sort(), 'no input record is lost');
    const inTopic = (await bus.listTopics()).find((t) => t.name === 'in')!;
    assert.deepEqual(await bus.committed('stage', 'in'), inTopic.endOffsets, 'the stage committed everything');
  } finally {
    await bus.close();
  }
});
