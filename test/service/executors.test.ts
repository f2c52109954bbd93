import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busRecording } from '../../src/archive/read-archive.ts';
import { loadRecordedRun } from '../../src/archive/replay-recording.ts';
import { verifyRun } from '../../src/archive/verify.ts';
import { parseRunConfig } from '../../src/config/schema.ts';
import { writeInitModel } from '../../src/model/init.ts';
import { BatchExecutor } from '../../src/service/batch-executor.ts';
import { publishInitialLineage, REF0_VERSION, roundVersions } from '../../src/service/lineage.ts';
import { MetricsEmitter } from '../../src/service/metrics.ts';
import { ServiceRoundExecutor } from '../../src/service/service-executor.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { alphaStage, replayStage } from '../../src/stages/index.ts';
import type { RoundContext } from '../../src/stages/stage.ts';
import { stageEvent } from '../../src/stages/stage.ts';
import { createLogger } from '../../src/util/log.ts';
import { Rng } from '../../src/util/random.ts';
import { batchesTopic } from '../../topics/batches.ts';
import { openEmbeddedBus } from '../../topics/embedded.ts';
import { offlineTopic, type OfflinePair } from '../../topics/offline.ts';
import { pairsTopic } from '../../topics/pairs.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';

/** Length-biased scored groups of round 1 (K = 4), as the score stage would write them. */
function scoredGroups(n: number): ScoredGroup[] {
  const rng = new Rng(11);
  return Array.from({ length: n }, (_, g) => ({
    promptId: `p${g}`,
    prompt: `Reverse the word cat${g}.`,
    promptTokenIds: Int32Array.of(1, 2, 3),
    round: 1,
    policyVersion: 0,
    runSeed: 7,
    referenceVersion: REF0_VERSION,
    beta: 0.1,
    responses: Array.from({ length: 4 }, (_, k) => {
      const len = 2 + rng.int(20);
      return {
        k,
        seed: k,
        tokenIds: Int32Array.from({ length: len }, (_, i) => 5 + ((g + k + i) % 40)),
        text: 'y'.repeat(len),
        charLength: len,
        tokenLength: len,
        finishReason: 'eos' as const,
        policyLogp: -len,
        refLogp: -1.4 * len,
        reward: 0.03 * len + rng.normal() * 0.2,
      };
    }),
  }));
}

test('one scored input, three executors (run, serve, verify): the same α* windows, pairs and batches; serve honours alpha.window', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-executors-'));
  writeInitModel('tiny', join(dir, 'sft'), { seed: 1 });
  writeInitModel('tiny', join(dir, 'base'), { seed: 2 });
  const dirOf = (v: number) => (v === REF0_VERSION ? join(dir, 'sft') : join(dir, 'base'));
  // windows of 3 groups over 8 (3 windows), and γ = 0.5 so offline pairs are scored by the tiny reference
  const config = parseRunConfig({ seed: 7, sampling: { k: 4 }, alpha: { window: 3 }, replay: { gamma: 0.5 }, train: { steps: 3, batch: 4 }, filters: { dropTruncated: false } });
  const offline: OfflinePair[] = Array.from({ length: 12 }, (_, i) => ({ pairId: `off${i}`, prompt: `Add ${i} and 2.`, chosen: `It is ${i + 2}.`, rejected: 'No idea.', chosenMessages: null, rejectedMessages: null, source: 'test' }));
  const groups = scoredGroups(8);
  const ns = 'ex';
  const T = (base: TopicBaseName) => topicName(ns, base);
  const bus = await openEmbeddedBus(join(dir, 'bus.db'));
  const log = createLogger({}, () => undefined);
  try {
    await createPipelineTopics(bus, ns);
    await publishInitialLineage(bus, T('checkpoints'), dirOf(0), dirOf(REF0_VERSION));
    // the recorded input: scored groups in an arrival order that is not promptId order
    const arrival = [...groups].reverse();
    await bus.produce(T('scored'), arrival.map((g) => ({ key: g.promptId, value: scoredTopic.encode(g) })));
    await bus.produce(T('offline'), offline.map((o) => ({ key: o.pairId, value: offlineTopic.encode(o) })));
    const metrics = new MetricsEmitter(bus, ns);
    metrics.stageEvent(stageEvent('run/config', { config: JSON.stringify(config), policyDir: dirOf(0), refDir: dirOf(-1), promptsFile: '-', offlineFile: null, onnxruntime: 'x', threads: 1, node: process.version }), null);
    await metrics.flush();
    const ctx: RoundContext = { config, versions: roundVersions(1, 'dice'), dirOf, runId: ns, roundPrompts: new Set(groups.map((g) => g.promptId)), roundPromptOrder: [] };

    // batch (dice run): from the topics, outputs to the topics
    const batch = new BatchExecutor({ bus, namespace: ns, round: 1, metrics, log, done: new Set() });
    const runWindows = (await batch.round(alphaStage, null, ctx))!;
    const runReplay = (await batch.round(replayStage, { offline }, ctx))!;
    const runPairs = await readWholeTopic(bus, T('pairs'), pairsTopic);
    const runBatches = await readWholeTopic(bus, T('batches'), batchesTopic);
    await metrics.flush();

    // service (dice serve's trainer): the same groups in memory, in yet another order
    const service = new ServiceRoundExecutor([...groups.slice(4), ...groups.slice(0, 4)], T, () => undefined, log);
    const serveWindows = await service.round(alphaStage, null, ctx);
    const serveReplay = await service.round(replayStage, { offline }, ctx);

    assert.equal(runWindows.length, 3, 'dice run: windows of alpha.window = 3 groups over 8');
    assert.equal(serveWindows.length, 3, 'dice serve honours alpha.window');
    assert.deepEqual(serveWindows.map((w) => [w.windowId, w.alpha, w.filter.groupsIn]), runWindows.map((w) => [w.windowId, w.alpha, w.filter.groupsIn]));
    assert.ok(new Set(runWindows.map((w) => w.alpha)).size > 1, 'windows have their own α*');
    const bytes = <T>(contract: { encode(v: T): Uint8Array }, list: T[]) => list.map((v) => Buffer.from(contract.encode(v)).toString('base64')).sort();
    assert.deepEqual(bytes(pairsTopic, serveWindows.flatMap((w) => w.pairs)), bytes(pairsTopic, runPairs));
    assert.equal(runPairs.length, 8);
    assert.deepEqual(bytes(batchesTopic, serveReplay.batches), bytes(batchesTopic, runBatches));
    assert.deepEqual(bytes(batchesTopic, runReplay.batches), bytes(batchesTopic, runBatches));
    assert.equal(runBatches.length, 3);
    assert.ok(runBatches.flatMap((b) => b.rows).some((r) => r.source === 'offline'), 'offline pairs replayed');
    // what the service would commit: the same pairs and batches, on the same topics
    assert.deepEqual(service.outputs.map((o) => [o.topic, o.records.length]), [[T('pairs'), 8], [T('batches'), 3]]);

    // verify (dice replay --verify): re-derives pairs and batches from the recording of the run's bus
    const report = await verifyRun(await loadRecordedRun(busRecording(bus, ns)), { rounds: [1], stages: ['pairs', 'batches'], workDir: join(dir, 'verify'), log });
    assert.deepEqual(report.stages.map((s) => [s.stage, s.records, s.identical]), [['pairs', 8, true], ['batches', 3, true]], JSON.stringify(report.stages.map((s) => s.first)));
  } finally {
    await bus.close();
  }
});
