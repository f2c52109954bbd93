import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import { topicName } from '../../topics/registry.ts';
import { samplesTopic } from '../../topics/samples.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { makeRunFixture, readCheckpoints, runCli } from './run-helpers.ts';

const fixture = makeRunFixture();

async function lineage(out: string) {
  const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    const cps = await readCheckpoints(bus, 'run');
    const samples = await readWholeTopic(bus, topicName('run', 'samples'), samplesTopic);
    return { refs: cps.filter((c) => c.version > 0).map((c) => c.referenceVersion), sampled: samples.length };
  } finally {
    await bus.close();
  }
}

test('baselines by config: offline DPO keeps π_ref(0); with new ref it moves; neither samples', async () => {
  for (const [method, refs] of [['offline-dpo', [-1, -1]], ['offline-dpo-new-ref', [0, 1]]] as const) {
    const out = join(fixture.dir, method);
    const r = await runCli([...fixture.args, '--out', out, '--method', method]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await lineage(out), { refs, sampled: 0 });
  }
});

test('alternative losses run the same loop: IPO, hinge, KTO', async () => {
  const hashes = new Set<string>();
  for (const loss of ['ipo', 'hinge', 'kto']) {
    const out = join(fixture.dir, loss);
    const r = await runCli([...fixture.args, '--out', out, '--loss', loss]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await lineage(out), { refs: [0, 1], sampled: 8 });
    hashes.add(/v2 .* ([0-9a-f]{16}) /.exec(r.stdout)![1]);
  }
  assert.equal(hashes.size, 3, 'each loss trains differently');
});
