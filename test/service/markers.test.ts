import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStagesDone } from '../../src/service/run.ts';
import { openEmbeddedBus } from '../../topics/embedded.ts';
import { doneMarker, markersTopic } from '../../topics/markers.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { createPipelineTopics, topicName } from '../../topics/registry.ts';

test('completion markers: the markers topic, and the stage-done metrics events of runs recorded before it', async () => {
  const bus = await openEmbeddedBus(join(mkdtempSync(join(tmpdir(), 'dice-markers-')), 'bus.db'));
  try {
    await createPipelineTopics(bus, 'old');
    await createPipelineTopics(bus, 'new');
    // a run recorded before the markers topic: its alpha stage of round 1 marked done on the metrics topic
    await bus.produce(topicName('old', 'metrics'), [{ key: 'alpha', value: metricsTopic.encode({ stage: 'alpha', type: 'stage-done', time: 1, round: 1 }) }]);
    await bus.produce(topicName('new', 'markers'), [{ key: 'replay', value: markersTopic.encode(doneMarker('replay', 2, 5)) }]);
    // a metrics event is not a marker of the new runs, and a seeding is not a completion
    await bus.produce(topicName('new', 'metrics'), [{ key: 'alpha', value: metricsTopic.encode({ stage: 'alpha', type: 'window', time: 1, round: 1 }) }]);
    await bus.produce(topicName('new', 'markers'), [{ key: 'replay', value: markersTopic.encode({ kind: 'seeded', stage: 'replay', round: null, time: 6, from: 'x', fromStage: 'pairs', recordedNamespace: null }) }]);
    assert.deepEqual((await readStagesDone(bus, 'old')).map((m) => [m.stage, m.round]), [['alpha', 1]]);
    assert.deepEqual((await readStagesDone(bus, 'new')).map((m) => [m.stage, m.round]), [['replay', 2]]);
    assert.throws(() => markersTopic.encode({ ...doneMarker('x', 1), kind: 'finished' as 'done' }), /kind/);
  } finally {
    await bus.close();
  }
});
