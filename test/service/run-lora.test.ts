import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import { verifyCheckpoint } from '../../src/model/checkpoint.ts';
import { loadPolicy } from '../../src/model/policy.ts';
import { makeRunFixture, readCheckpoints, readLineage, runCli } from './run-helpers.ts';

const fixture = makeRunFixture();

test('dice run --lora: each round trains an adapter on π_θ(t−1); checkpoints are PEFT adapters chained v2 → v1 → v0, the next round samples and scores the merged policy; replay --verify re-derives the adapters', async () => {
  const out = join(fixture.dir, 'lora');
  const r = await runCli([...fixture.args, '--out', out, '--lora', 'r=2,alpha=4,targets=q,v,down']);
  assert.equal(r.code, 0, r.stderr);
  const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    const cps = await readCheckpoints(bus, 'run');
    assert.deepEqual(cps.map((c) => [c.version, c.parentVersion, c.referenceVersion]), [[-1, null, null], [0, null, -1], [1, 0, 0], [2, 1, 1]]);
    const [v0, v1, v2] = [cps[1], cps[2], cps[3]];
    for (const c of [v1, v2]) {
      assert.ok(existsSync(join(c.location, 'adapter_model.safetensors')), `${c.location} is an adapter`);
      assert.ok(!existsSync(join(c.location, 'model.safetensors')), 'no copy of the weights');
      assert.equal(verifyCheckpoint(c.location).sha256, c.sha256, 'the topic carries the adapter weights hash');
    }
    assert.equal(verifyCheckpoint(v1.location).adapter!.base.location, v0.location);
    assert.equal(verifyCheckpoint(v2.location).adapter!.base.location, v1.location);
    assert.equal(verifyCheckpoint(v2.location).adapter!.base.sha256, v1.sha256);
    assert.deepEqual(verifyCheckpoint(v2.location).adapter!.targets, ['q', 'v', 'down']);
    assert.equal(loadPolicy(v2.location).adapters.length, 2);
    const { scored } = await readLineage(bus, 'run');
    for (const g of scored) assert.deepEqual([g.policy, g.reference], g.round === 1 ? [0, -1] : [1, 0]);
    assert.equal(scored.length, 8);
  } finally {
    await bus.close();
  }

  // replay --verify re-trains each round's adapter from the recorded batches: the same adapter bytes
  const archive = join(fixture.dir, 'lora-archive');
  const a = await runCli(['archive', '--bus', `embedded:${join(out, 'bus.db')}`, '--namespace', 'run', '--out', archive]);
  assert.equal(a.code, 0, a.stderr);
  const v = await runCli(['replay', '--from', archive, '--verify', '--json', '--verify-stages', 'checkpoints', '--out', join(fixture.dir, 'lora-verify')]);
  assert.equal(v.code, 0, v.stderr);
  const report = JSON.parse(v.stdout) as { identical: boolean; stages: Array<{ round: number; stage: string; identical: boolean }> };
  assert.equal(report.identical, true);
  assert.deepEqual(report.stages.map((x) => [x.round, x.stage, x.identical]), [[1, 'checkpoints', true], [2, 'checkpoints', true]]);
});
