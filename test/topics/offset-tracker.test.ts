import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { OffsetTracker } from '../../topics/offset-tracker.ts';
import { murmur2, partitionForKey } from '../../topics/partitioner.ts';
import { Rng } from '../../src/util/random.ts';

test('OffsetTracker: the committable offset advances only past a contiguous done prefix', () => {
  const t = new OffsetTracker(10);
  assert.equal(t.committable, 10);
  for (const o of [10, 11, 13, 14]) t.deliver(o); // 12 was skipped (already done elsewhere)
  assert.equal(t.inFlight, 4);
  assert.equal(t.markDone(11), null);
  assert.equal(t.markDone(13), null);
  assert.equal(t.committable, 10);
  assert.equal(t.markDone(10), 14, '10, 11 done and 12, 13 not pending: next undone is 14');
  assert.equal(t.markDone(10), null, 'twice is harmless');
  assert.equal(t.isOutstanding(14), true);
  assert.equal(t.isOutstanding(12), false);
  assert.equal(t.markDone(14), 15);
  assert.equal(t.inFlight, 0);
  assert.throws(() => t.deliver(3), /below the next expected offset/);
});

test('OffsetTracker agrees with a brute-force model under random completion order', () => {
  const rng = new Rng(11);
  const t = new OffsetTracker(0);
  const delivered: number[] = [];
  const done = new Set<number>();
  let offset = 0;
  for (let step = 0; step < 5000; step++) {
    if (rng.next() < 0.5) {
      offset += rng.next() < 0.1 ? 2 : 1;
      t.deliver(offset);
      delivered.push(offset);
    } else {
      const pending = delivered.filter((o) => !done.has(o));
      if (pending.length === 0) continue;
      const o = pending[Math.floor(rng.next() * pending.length)];
      done.add(o);
      t.markDone(o);
    }
    const firstUndone = delivered.find((o) => !done.has(o));
    assert.equal(t.committable, firstUndone ?? (delivered.length ? delivered[delivered.length - 1] + 1 : 0));
    assert.equal(t.inFlight, delivered.length - done.size);
  }
});

test("partitionForKey matches kafkajs's default partitioner (murmur2)", () => {
  const require = createRequire(import.meta.url);
  const kafkaMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2') as (k: Buffer) => number;
  const keys = ['', 'a', 'ab', 'abc', 'abcd', 'prompt-123', 'ключ', '😀😀', 'x'.repeat(101)];
  for (let i = 0; i < 200; i++) keys.push(`p${i * 7919}`);
  for (const k of keys) {
    assert.equal(murmur2(Buffer.from(k)), kafkaMurmur2(Buffer.from(k)), `murmur2(${k})`);
    assert.equal(partitionForKey(k, 12), (kafkaMurmur2(Buffer.from(k)) & 0x7fffffff) % 12);
  }
});
