import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { parseRelocations, promptsInRoundOrder, relocate, type RecordedRun } from '../../src/archive/replay-recording.ts';
import { firstDifference, reportValue } from '../../src/archive/verify-diff.ts';
import type { BusRecord } from '../../topics/bus.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import { promptOrderMarker, promptOrdersOf } from '../../topics/markers.ts';
import type { SamplesGroup } from '../../topics/samples.ts';

describe('verify: first difference of two records', () => {
  const group = () => ({ promptId: 'p1', responses: [{ k: 0, tokenIds: Int32Array.from([1, 2, 3]), policyLogp: -1.5 }, { k: 1, tokenIds: Int32Array.from([4]), policyLogp: -2 }] });

  it('is null for equal records (typed arrays compared by value)', () => {
    assert.equal(firstDifference(group(), group()), null);
  });

  it('names the path of the first differing leaf, typed-array elements included', () => {
    const b = group();
    b.responses[1].tokenIds[0] = 9;
    b.responses[1].policyLogp = -3;
    assert.deepEqual(firstDifference(group(), b), { path: 'responses[1].tokenIds[0]', recorded: 4, rederived: 9 });
  });

  it('reports a length difference after the common prefix', () => {
    const b = group();
    b.responses[0].tokenIds = Int32Array.from([1, 2]);
    assert.deepEqual(firstDifference(group(), b), { path: 'responses[0].tokenIds.length', recorded: 3, rederived: 2 });
  });

  it('compares numbers bit for bit: 1 ulp, −0 and 0 differ; NaN equals NaN', () => {
    assert.deepEqual(firstDifference({ x: 0.1 + 0.2 }, { x: 0.3 }), { path: 'x', recorded: 0.30000000000000004, rederived: 0.3 });
    assert.deepEqual(firstDifference({ x: -0 }, { x: 0 }), { path: 'x', recorded: -0, rederived: 0 });
    assert.equal(firstDifference({ x: NaN }, { x: NaN }), null);
  });

  it('sees a field only one side has', () => {
    assert.deepEqual(firstDifference({ a: 1 }, { a: 1, b: null }), { path: 'b', recorded: undefined, rederived: null });
  });

  it('shortens long values for the report', () => {
    assert.deepEqual(reportValue(Int32Array.from({ length: 20 }, (_, i) => i), 3), [0, 1, 2, '… (20 items)']);
    assert.equal(reportValue('x'.repeat(300), 16, 5), 'xxxxx… (300 chars)');
  });
});

describe('replay: checkpoint relocation', () => {
  it('maps the longest matching directory prefix, never a partial name', () => {
    const map = parseRelocations(['/runs/a=/mnt/a', '/runs/a/v1=/other/v1/']);
    assert.equal(relocate('/runs/a/v2', map), '/mnt/a/v2');
    assert.equal(relocate('/runs/a/v1', map), '/other/v1');
    assert.equal(relocate('/runs/a', map), '/mnt/a');
    assert.equal(relocate('/runs/ab/v1', map), '/runs/ab/v1');
  });

  it('rejects a pair without both sides', () => {
    assert.throws(() => parseRelocations(['/runs/a']), /--relocate expects OLD=NEW/);
    assert.throws(() => parseRelocations(['/runs/a=']), /--relocate expects OLD=NEW/);
  });
});

describe('replay: prompts in the recorded round order', () => {
  const record = { topic: 't', partition: 0, offset: 0, key: null, value: new Uint8Array(), headers: {}, timestamp: 0 } as BusRecord;
  const prompt = (id: string): PromptRecord => ({ promptId: id, text: id, messages: null, source: 's', arrivalTime: 0 });
  const group = (id: string, round: number) => ({ promptId: id, round }) as SamplesGroup;

  it("puts each round's sampled and refused prompts in round order, unused ones last, keeping bus order within", () => {
    const run = {
      prompts: ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((id) => ({ value: prompt(id), record })),
      samples: [group('f', 1), group('b', 2), group('a', 1), group('d', 2)].map((value) => ({ value, record })),
      samplerRejected: new Map([['c', 1]]),
      promptOrders: new Map(),
    } as unknown as RecordedRun;
    assert.deepEqual(promptsInRoundOrder(run).map((p) => p.promptId), ['a', 'c', 'f', 'b', 'd', 'e', 'g']);
  });

  it("within a round, the run's recorded prompt order (its 'prompts' marker) beats the bus order", () => {
    const run = {
      prompts: ['a', 'b', 'c', 'd', 'e'].map((id) => ({ value: prompt(id), record })),
      samples: [group('a', 1), group('c', 1), group('b', 2), group('d', 2)].map((value) => ({ value, record })),
      samplerRejected: new Map(),
      // the prompts topic's partitions gave a, b, c, d; the run took c, a in round 1 and d, b in round 2
      promptOrders: promptOrdersOf([promptOrderMarker(1, ['c', 'a']), promptOrderMarker(2, ['d', 'b']), promptOrderMarker(1, ['a', 'c'])]),
    } as unknown as RecordedRun;
    assert.deepEqual(promptsInRoundOrder(run).map((p) => p.promptId), ['c', 'a', 'd', 'b', 'e']);
  });
});
