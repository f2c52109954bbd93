import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import { topicName } from '../../topics/registry.ts';
import { samplesTopic } from '../../topics/samples.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { kafkaTestUrl, stopIfStarted } from '../topics/kafka-broker.ts';
import { assertRejectedV1NeverUsed, CliProcess, makeRunFixture, RANKING_GATE_ARGS, readCheckpoints, readLineage, runCli } from './run-helpers.ts';

const url = kafkaTestUrl();
after(() => stopIfStarted());

test('dice run over the real Kafka broker: 2 rounds, lineage verified from the topics', async () => {
  const { dir, args } = makeRunFixture();
  const namespace = `run${Date.now()}`;
  const r = await runCli([...args, '--out', join(dir, 'out'), '--bus', url, '--namespace', namespace]);
  assert.equal(r.code, 0, r.stderr);
  const bus = await openBus(url);
  try {
    const cps = await readCheckpoints(bus, namespace);
    assert.deepEqual(cps.map((c) => [c.version, c.parentVersion, c.referenceVersion]), [[-1, null, null], [0, null, -1], [1, 0, 0], [2, 1, 1]]);
    const { scored } = await readLineage(bus, namespace);
    assert.equal(scored.length, 8);
    for (const g of scored) assert.deepEqual([g.policy, g.reference], g.round === 1 ? [0, -1] : [1, 0]);
  } finally {
    await bus.close();
  }
  // the same run on the embedded bus gives the same checkpoints: the bus does not change the result
  const e = await runCli([...args, '--out', join(dir, 'embedded')]);
  assert.equal(e.code, 0, e.stderr);
  const eb = await openBus(`embedded:${join(dir, 'embedded', 'bus.db')}`);
  const kb = await openBus(url);
  try {
    assert.deepEqual((await readCheckpoints(eb, 'run')).map((c) => c.sha256), (await readCheckpoints(kb, namespace)).map((c) => c.sha256));
  } finally {
    await eb.close();
    await kb.close();
  }
});

test('dice run with a health gate over the real Kafka broker: the rejected v1 never reaches a sampler or a scorer', async () => {
  const { dir, args } = makeRunFixture();
  const namespace = `gated${Date.now()}`;
  const r = await runCli([...args, ...RANKING_GATE_ARGS, '--out', join(dir, 'out'), '--bus', url, '--namespace', namespace, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const bus = await openBus(url);
  try {
    await assertRejectedV1NeverUsed(bus, namespace, r.stdout);
  } finally {
    await bus.close();
  }
});

test('two `serve --role sampler` processes in one consumer group sample every prompt exactly once', async () => {
  const { dir, args } = makeRunFixture(16);
  const policy = args[args.indexOf('--policy') + 1];
  const ref = args[args.indexOf('--ref') + 1];
  const namespace = `two${Date.now()}`;
  const samplerArgs = ['serve', '--role', 'sampler', '--policy', policy, '--ref', ref, '--bus', url, '--namespace', namespace, '--prompts-per-round', '100', '-k', '2', '--max-new-tokens', '4'];
  // The second member starts once the first has created the namespace's topics (two processes
  // creating the same topics at once on a fresh broker can meet its metadata lag).
  const a = new CliProcess(samplerArgs);
  let b: CliProcess | undefined;
  try {
    await a.waitFor(/"msg":"serving"/);
    b = new CliProcess(samplerArgs);
    await b.waitFor(/"msg":"serving"/);
    await new Promise((r) => setTimeout(r, 4000)); // let the group settle on 2 members × 2 partitions
    const produced = await runCli(['produce', '--topic', topicName(namespace, 'prompts'), '--file', join(dir, 'prompts.jsonl'), '--bus', url]);
    assert.equal(produced.code, 0, produced.stderr);
    const bus = await openBus(url);
    try {
      let groups = await readWholeTopic(bus, topicName(namespace, 'samples'), samplesTopic);
      for (let i = 0; i < 300 && groups.length < 16; i++) {
        await new Promise((r) => setTimeout(r, 200));
        groups = await readWholeTopic(bus, topicName(namespace, 'samples'), samplesTopic);
      }
      const ids = groups.map((g) => g.promptId).sort();
      assert.equal(ids.length, 16, `16 samples groups, got ${ids.length}`);
      assert.equal(new Set(ids).size, 16, 'no prompt was sampled twice');
    } finally {
      await bus.close();
    }
    const [ea, eb] = await Promise.all([a.stop(), b.stop()]);
    const bb = b;
    assert.equal(ea.code, 0, a.stderr);
    assert.equal(eb.code, 0, bb.stderr);
    const outputs = (p: CliProcess) => Number(/"msg":"sampler stopped".*?"outputs":(\d+)/.exec(p.stderr)?.[1] ?? -1);
    assert.equal(outputs(a) + outputs(bb), 16);
    assert.ok(outputs(a) > 0 && outputs(bb) > 0, `both members sampled: ${outputs(a)} + ${outputs(bb)}`);
  } finally {
    await a.stop('SIGKILL');
    await b?.stop('SIGKILL');
  }
});
