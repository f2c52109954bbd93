import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { map } from 'rxjs';
import { groupLag, runPerRecordStage } from '../../src/service/stage-runner.ts';
import { openEmbeddedBus, type EmbeddedBus } from '../../topics/embedded.ts';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';

/** The consumer lag a per-record stage reports with each output (what `dice run` puts on its stage events for the monitor). */

describe('stage consumer lag', () => {
  let dir: string;
  let bus: EmbeddedBus;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dice-stage-lag-'));
    bus = await openEmbeddedBus(join(dir, 'bus.db'));
  });
  after(async () => {
    await bus?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('groupLag: written minus committed per partition, everything where nothing is committed', () => {
    assert.equal(groupLag([10, 4, 7], [10, 1, -1]), 0 + 3 + 7);
    assert.equal(groupLag([5], []), 5);
    assert.equal(groupLag([], []), 0);
  });

  it('each output carries the records of the input topic its group has not committed yet, falling to 0', async () => {
    await bus.createTopic('in', { partitions: 1 });
    await bus.createTopic('out', { partitions: 1 });
    await bus.createTopic('dead', { partitions: 1 });
    const n = 6;
    const prompts: PromptRecord[] = Array.from({ length: n }, (_, i) => ({ promptId: `p${i}`, text: `prompt ${i}`, messages: null, source: 'test', arrivalTime: 0 }));
    await bus.produce('in', prompts.map((p) => ({ key: p.promptId, value: promptsTopic.encode(p) })));

    const lags: number[] = [];
    const counts = await runPerRecordStage<PromptRecord, PromptRecord>({
      bus,
      groupId: 'g',
      input: { topic: 'in', contract: promptsTopic, deadLetterTopic: 'dead' },
      keyOfInput: (p) => p.promptId,
      keyOfOutput: (p) => p.promptId,
      operator: () => map((p) => p),
      outputs: (p) => [{ topic: 'out', records: [{ key: p.promptId, value: promptsTopic.encode(p) }] }],
      untilEnd: true,
      onOutput: (_p, { lag }) => lags.push(lag),
    });
    assert.equal(counts.outputs, n);
    // Outputs settle in order on one partition, so read or counted down, the lag after the k-th is n − k.
    assert.deepEqual(lags, [5, 4, 3, 2, 1, 0]);
    assert.deepEqual(await bus.committed('g', 'in'), [n]);
  });
});
