import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import { makeRunFixture, readCheckpoints, readLineage, runCli } from './run-helpers.ts';

const fixture = makeRunFixture();

test('dice run: 2 rounds give v1, v2 with the paper lineage, verified from the topics', async () => {
  const out = join(fixture.dir, 'straight');
  const r = await runCli([...fixture.args, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    const cps = await readCheckpoints(bus, 'run');
    assert.deepEqual(cps.map((c) => [c.version, c.parentVersion, c.referenceVersion, c.round]), [[-1, null, null, 0], [0, null, -1, 0], [1, 0, 0, 1], [2, 1, 1, 2]]);
    const { scored, samples } = await readLineage(bus, 'run');
    // round 1 samples from v0 and scores with (v0, π_ref(0) = SFT); round 2 with (v1, v0)
    assert.equal(scored.length, 8);
    for (const g of scored) assert.deepEqual([g.policy, g.reference], g.round === 1 ? [0, -1] : [1, 0]);
    for (const g of samples) assert.equal(g.policy, g.round - 1);
    assert.equal(new Set(scored.filter((g) => g.round === 1).map((g) => g.promptId)).size, 4);
    // fresh prompts per round: no prompt is used twice
    assert.equal(new Set(scored.map((g) => g.promptId)).size, 8);
  } finally {
    await bus.close();
  }

  // Same seed, same inputs: the same checkpoints, byte for byte.
  const again = join(fixture.dir, 'again');
  const r2 = await runCli([...fixture.args, '--out', again]);
  assert.equal(r2.code, 0, r2.stderr);
  const bus2 = await openBus(`embedded:${join(again, 'bus.db')}`);
  const bus1 = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    assert.deepEqual((await readCheckpoints(bus2, 'run')).map((c) => c.sha256), (await readCheckpoints(bus1, 'run')).map((c) => c.sha256));
  } finally {
    await bus1.close();
    await bus2.close();
  }

  // SIGKILL mid-round (twice, at different stages), rerun the same command: the same final hashes.
  const killed = join(fixture.dir, 'killed');
  const k1 = await runCli([...fixture.args, '--out', killed], { killWhen: /"msg":"scored".*"round":1|"round":1.*"msg":"scored"/ });
  assert.equal(k1.signal, 'SIGKILL', 'the first run was killed');
  const k2 = await runCli([...fixture.args, '--out', killed], { killWhen: /"msg":"replay mix"[^\n]*"round":2|"round":2[^\n]*"msg":"replay mix"/ });
  assert.equal(k2.signal, 'SIGKILL', 'the second run was killed');
  const k3 = await runCli([...fixture.args, '--out', killed]);
  assert.equal(k3.code, 0, k3.stderr);
  const busK = await openBus(`embedded:${join(killed, 'bus.db')}`);
  const busS = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    const resumed = await readCheckpoints(busK, 'run');
    assert.deepEqual(resumed.map((c) => c.sha256), (await readCheckpoints(busS, 'run')).map((c) => c.sha256));
    // nothing was done twice: one scored group per prompt
    assert.equal((await readLineage(busK, 'run')).scored.length, 8);
  } finally {
    await busK.close();
    await busS.close();
  }
});
