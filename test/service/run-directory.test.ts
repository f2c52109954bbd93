import test from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { copyFileSync, closeSync, existsSync, openSync, renameSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sha256File } from '../../src/model/checkpoint.ts';
import { openBus } from '../../topics/open-bus.ts';
import { CliProcess, makeRunFixture, readCheckpoints, runCli } from './run-helpers.ts';

const fixture = makeRunFixture();
const STACK = /^\s+at .+[:(]/m;
const hashes = (out: string, versions: number[]) => versions.map((v) => sha256File(join(out, `v${v}`, 'model.safetensors')));

/** Sends a request whose target is not a URL; resolves with the status line (or '' when the connection just closed). */
function malformedRequest(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.on('data', (d) => (got += d));
    s.on('error', () => resolve(got));
    s.on('close', () => resolve(got.split('\r\n')[0]));
    s.write(`GET http://[ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
  });
}

test('two dice run on one --out: the second is refused naming the holder; the first finishes, a malformed monitor request does not stop it', async () => {
  const out = join(fixture.dir, 'shared');
  const args = [...fixture.args, '--out', out, '--monitor', '0'];
  const a = new CliProcess(args);
  await a.waitFor(/"msg":"monitor"/);
  const b = await runCli(args);
  assert.equal(b.code, 1, b.stderr);
  assert.match(b.stderr, new RegExp(`another dice run holds .*shared \\(pid ${a.child.pid} on .*\\): wait for it to finish, or choose another --out`));
  assert.doesNotMatch(b.stderr, STACK);
  const port = Number(/"url":"http:\/\/127\.0\.0\.1:(\d+)\//.exec(a.stderr)![1]);
  assert.equal(await malformedRequest(port), 'HTTP/1.1 400 Bad Request');
  const ended = await a.exited;
  assert.equal(ended.code, 0, a.stderr);
  const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    assert.deepEqual((await readCheckpoints(bus, 'run')).map((c) => c.version), [-1, 0, 1, 2]);
  } finally {
    await bus.close();
  }
});

test('a finished run: a lost, emptied or damaged bus, another seed, or a foreign v1 never overwrite its checkpoints', async () => {
  const out = join(fixture.dir, 'shared'); // finished by the test above
  const before = hashes(out, [1, 2]);
  const busFile = join(out, 'bus.db');
  const attempt = async (extra: string[], expected: RegExp) => {
    const r = await runCli([...fixture.args, '--out', out, ...extra]);
    assert.equal(r.code, 1, `${extra.join(' ')}\n${r.stderr}`);
    assert.match(r.stderr, expected);
    assert.doesNotMatch(r.stderr, STACK);
    assert.deepEqual(hashes(out, [1, 2]), before, 'checkpoints unchanged');
  };
  renameSync(busFile, `${busFile}.kept`);
  await attempt([], /bus\.db is missing, but .*shared holds checkpoints v1, v2 of an earlier start/);
  await attempt(['--seed', '8'], /holds a run started with another config: config\.seed was 7, now 8\. Resume with the same flags/);
  copyFileSync(`${busFile}.kept`, busFile);
  truncateSync(busFile, 0);
  await attempt([], /bus\.db is empty, but .*holds checkpoints v1, v2/);
  copyFileSync(`${busFile}.kept`, busFile);
  const fd = openSync(busFile, 'r+');
  writeSync(fd, Buffer.alloc(6000, 0xa7), 0, 6000, 9000);
  closeSync(fd);
  await attempt([], /bus\.db: the embedded bus is damaged \(.+\)\. Nothing was read from it/);
  // No run.json (another tool's directory, or the record deleted): v1 and v2 are not this run's.
  rmSync(busFile);
  renameSync(join(out, 'run.json'), join(out, 'run.json.kept'));
  await attempt([], /shared\/v1 \(and v2\) exists but was not written by this run \(there is no run\.json\)/);
  renameSync(join(out, 'run.json.kept'), join(out, 'run.json'));
  renameSync(`${busFile}.kept`, busFile);
  const again = await runCli([...fixture.args, '--out', out]);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(hashes(out, [1, 2]), before);
});

test('resumed with another config after round 1: refused naming the keys; --allow-config-change continues on purpose', async () => {
  const out = join(fixture.dir, 'changed');
  const k = await runCli([...fixture.args, '--out', out], { killWhen: /"msg":"checkpoint"[^\n]*"round":1|"round":1[^\n]*"msg":"checkpoint"/ });
  assert.equal(k.signal, 'SIGKILL');
  assert.ok(existsSync(join(out, 'v1', 'manifest.json')));
  const v1 = hashes(out, [1]);
  const changed = ['--lr', '2e-3', '--gamma', '0.25', '--seed', '9'];
  const refused = await runCli([...fixture.args, '--out', out, ...changed]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /another config: config\.replay\.gamma was 0\.5, now 0\.25; config\.seed was 7, now 9; config\.train\.lr was 0\.001, now 0\.002\. Resume with the same flags, choose another --out for a new run, or pass --allow-config-change/);
  assert.doesNotMatch(refused.stderr, STACK);
  assert.equal(existsSync(join(out, 'v2')), false, 'nothing was trained');
  const allowed = await runCli([...fixture.args, '--out', out, ...changed, '--allow-config-change']);
  assert.equal(allowed.code, 0, allowed.stderr);
  assert.match(allowed.stderr, /resuming with a changed config/);
  assert.deepEqual(hashes(out, [1]), v1, 'round 1 is kept, not redone');
  assert.ok(existsSync(join(out, 'v2', 'manifest.json')));
});
