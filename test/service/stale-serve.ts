import assert from 'node:assert/strict';
import { join } from 'node:path';
import { busRecording } from '../../src/archive/read-archive.ts';
import { loadRecordedRun } from '../../src/archive/replay-recording.ts';
import { verifyRun } from '../../src/archive/verify.ts';
import { samplingVersions } from '../../src/service/lineage.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { createLogger } from '../../src/util/log.ts';
import type { Bus } from '../../topics/bus.ts';
import { metricsTopic, type MetricEvent } from '../../topics/metrics.ts';
import { openBus } from '../../topics/open-bus.ts';
import { pairsTopic } from '../../topics/pairs.ts';
import { promptsTopic } from '../../topics/prompts.ts';
import { topicName } from '../../topics/registry.ts';
import { samplesTopic } from '../../topics/samples.ts';
import { scoredTopic } from '../../topics/scored.ts';
import { CliProcess, makeRunFixture, readCheckpoints, serveArgs } from './run-helpers.ts';

/**
 * `dice serve --set serve.maxStaleness=1` on a bus (embedded or Kafka), all roles in one real child
 * process, tiny random models, 2 prompts per round. Two prompts go in; once round 1 trains, two more:
 * the sampler samples them with v0 for round 2 while round 1 trains; they carry the reward of v0
 * and make up round 2's window (trained from v1); groups more than one version behind are dropped
 * and counted; replay --verify re-derives samples, scored and pairs of each round from the recording.
 */
export async function checkBoundedStaleness(busUrl: string, namespace: string | undefined): Promise<void> {
  const fixture = makeRunFixture(0);
  const { dir } = fixture;
  const T = (base: Parameters<typeof topicName>[1]) => topicName(namespace, base);
  const serve = new CliProcess([
    ...serveArgs(fixture, busUrl),
    ...(namespace ? ['--namespace', namespace] : []),
    '--prompts-per-round', '2', '-k', '2', '--steps', '1', '--batch', '2', '--max-new-tokens', '6', '--lr', '1e-3', '--warmup', '1', '--seed', '7',
    '--set', 'filters.dropTruncated=false', '--set', 'sampling.promptsPerCall=1', '--set', 'serve.maxStaleness=1',
  ]);
  const bus = await openBus(busUrl);
  const prompts = (...ids: string[]) =>
    bus.produce(T('prompts'), ids.map((id) => ({ key: id, value: promptsTopic.encode({ promptId: id, text: `Reverse the word ${id}.`, messages: null, source: 'test', arrivalTime: Date.now() }) })));
  try {
    await serve.waitFor(/"msg":"serving"/);
    await prompts('p0', 'p1');
    await serve.waitFor(/"msg":"round starts"/);
    await prompts('p2', 'p3'); // while round 1 trains
    await serve.waitFor(/"msg":"checkpoint".*"version":"v2"/, 300_000);

    // Over the bound: a samples group and a scored group of v0 while v2 is current (two versions behind).
    const sample = (await readWholeTopic(bus, T('samples'), samplesTopic)).find((g) => g.policyVersion === 0)!;
    await bus.produce(T('samples'), [{ key: 'late-s', value: samplesTopic.encode({ ...sample, promptId: 'late-s', round: 3 }) }]);
    const scoredGroup = (await readWholeTopic(bus, T('scored'), scoredTopic)).find((g) => g.policyVersion === 0)!;
    await bus.produce(T('scored'), [{ key: 'late-t', value: scoredTopic.encode({ ...scoredGroup, promptId: 'late-t', round: 9 }) }]);
    const dropped = await waitForEvents(bus, T('metrics'), (es) => es.some((e) => is(e, 'score/stale-dropped') && e.promptId === 'late-s') && es.some((e) => is(e, 'train/stale-dropped') && e.promptId === 'late-t'));
    // one more prompt: sampled by v2 (the sampler's engine moves v0 → v2), a round 3 that never fills
    await prompts('p4');
    await waitForEvents(bus, T('metrics'), (es) => es.some((e) => is(e, 'sample/group') && e.promptId === 'p4'));
    const exit = await serve.stop('SIGTERM');
    assert.equal(exit.code, 0, serve.stderr);

    const cps = await readCheckpoints(bus, namespace);
    assert.deepEqual(cps.slice(0, 4).map((c) => [c.version, c.parentVersion, c.referenceVersion]), [[-1, null, null], [0, null, -1], [1, 0, 0], [2, 1, 1]]);
    const samples = await readWholeTopic(bus, T('samples'), samplesTopic);
    const scored = await readWholeTopic(bus, T('scored'), scoredTopic);
    const pairs = await readWholeTopic(bus, T('pairs'), pairsTopic);
    const events = await readWholeTopic(bus, T('metrics'), metricsTopic);

    // round 2 trains from v1 on the groups v0 sampled while round 1 trained (round/start 1 → v1 published)
    const of = (round: number) => scored.filter((g) => g.round === round && !g.promptId.startsWith('late'));
    assert.deepEqual(of(1).map((g) => [g.promptId, g.policyVersion]).sort(), [['p0', 0], ['p1', 0]]);
    assert.deepEqual(of(2).map((g) => [g.promptId, g.policyVersion]).sort(), [['p2', 0], ['p3', 0]]);
    const start = events.find((e) => is(e, 'round/start') && e.round === 1)!;
    const published = events.find((e) => is(e, 'checkpoint/published') && e.version === 1)!;
    const sampledWhileTraining = events.filter((e) => is(e, 'sample/group') && e.round === 2 && e.policyVersion === 0 && e.time >= start.time && e.time <= published.time);
    // (both slots are taken under v0 while round 1 trains; on Kafka a group's event can land after v1,
    // once its output transaction commits)
    assert.ok(sampledWhileTraining.length > 0, `no round-2 group was sampled while round 1 trained (${start.time} → ${published.time})`);
    assert.deepEqual(samples.filter((g) => g.promptId === 'p4').map((g) => [g.round, g.policyVersion]), [[3, 2]]);
    // every reward is the sampling version's: (v, π_ref of v), whatever round the group trains in
    for (const g of scored) assert.equal(g.referenceVersion, samplingVersions(g.round, g.policyVersion, 'dice', new Set()).scoringReference, `${g.promptId}: reference`);
    // one version per group: the sampler's seeds and log-probs (checked by the verify below) come from the group's version
    // the staleness histogram of each round's training pairs
    const pairsOf = (round: number) => pairs.filter((p) => of(round).some((g) => g.promptId === p.promptId)).length;
    const histogram = (round: number) => events.find((e) => is(e, 'train/staleness') && e.round === round)?.histogram;
    assert.ok(pairsOf(1) > 0 && pairsOf(2) > 0, 'both rounds have pairs');
    assert.deepEqual([histogram(1), histogram(2)], [JSON.stringify([pairsOf(1), 0]), JSON.stringify([0, pairsOf(2)])]);
    // over the bound: dropped, counted, never scored or paired
    assert.equal(dropped.find((e) => is(e, 'train/stale-dropped') && e.promptId === 'late-t')!.staleness, 2);
    assert.ok(!scored.some((g) => g.promptId === 'late-s'), 'the too-stale samples group was scored');
    assert.ok(!pairs.some((p) => p.promptId.startsWith('late')), 'a too-stale group made a pair');
    assert.ok(samples.every((g) => g.round - 1 - g.policyVersion <= 1 || g.promptId.startsWith('late')), 'a sampler ran more than one version ahead');
    // utilisation and switch time are recorded per role
    for (const role of ['sampler', 'scorer', 'trainer']) assert.ok(events.some((e) => is(e, 'serve/role-time') && e.role === role && e.round === 1), `serve/role-time of ${role}`);
    assert.ok(events.some((e) => is(e, 'serve/engine-switch') && e.role === 'sampler' && e.fromVersion === 0 && e.toVersion === 2), 'the sampler switched v0 → v2');

    // replay --verify: each group re-derived whole on its recorded version gives the same bytes (no
    // group mixes versions), and the recorded round tags give the same windows and pairs
    const recorded = await loadRecordedRun(busRecording(bus, namespace));
    // the served rounds are the trained ones (groups sampled ahead for an untrained round are not a round yet)
    assert.equal(recorded.rounds, Math.max(...(await readCheckpoints(bus, namespace)).map((c) => c.round)));
    const report = await verifyRun(recorded, { rounds: [1, 2], stages: ['samples', 'scored', 'pairs'], workDir: join(dir, 'verify'), log: createLogger({}, () => undefined) });
    assert.ok(report.identical, JSON.stringify(report.stages.filter((s) => !s.identical)));
    assert.deepEqual(report.stages.map((s) => [s.round, s.stage, s.records > 0]), [[1, 'samples', true], [1, 'scored', true], [1, 'pairs', true], [2, 'samples', true], [2, 'scored', true], [2, 'pairs', true]]);
  } finally {
    await serve.stop('SIGKILL');
    await bus.close();
  }
}

function is(e: MetricEvent, name: string): boolean {
  return `${e.stage}/${e.type}` === name;
}

async function waitForEvents(bus: Bus, topic: string, done: (events: MetricEvent[]) => boolean, ms = 60_000): Promise<MetricEvent[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const events = await readWholeTopic(bus, topic, metricsTopic);
    if (done(events)) return events;
    if (Date.now() > deadline) throw new Error(`timed out waiting for metrics events on ${topic}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
