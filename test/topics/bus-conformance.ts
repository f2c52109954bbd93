/**
 * The Bus conformance suite: one set of behaviours every Bus implementation must show. Run it with
 * `busConformanceSuite('embedded', makeBus)` from a *.test.ts file; `makeBus` is called once per
 * test (and again inside a test to check what a fresh client sees) and must return buses that share
 * state (the same db file, the same broker). Every test uses its own topic and group names, so the
 * suite can run against a shared Kafka broker.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { firstValueFrom, Observable, Subscription, timeout, toArray, take } from 'rxjs';
import type { Bus, ConsumedRecord, ConsumeOptions } from '../../topics/bus.ts';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { deadLetterTopic } from '../../topics/dead-letter.ts';
import { decodeOrDeadLetter } from '../../topics/decode-or-dead-letter.ts';

export interface BusConformanceOptions {
  /** How long a test waits for records to arrive before failing (default 20 s; a broker may rebalance slowly). */
  waitMs?: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const text = (r: { value: Uint8Array }) => decoder.decode(r.value);
let counter = 0;

/** Unique topic/group names: a shared broker keeps topics between runs. */
function uniq(label: string): string {
  counter++;
  return `conf-${label}-${Date.now().toString(36)}-${counter}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it holds or `ms` pass. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** A live subscription that gathers what it receives, so a test can act while still subscribed. */
class Gatherer {
  readonly records: ConsumedRecord[] = [];
  completed = false;
  error: unknown = null;
  private readonly sub: Subscription;
  constructor(source: Observable<ConsumedRecord>, onRecord?: (r: ConsumedRecord) => void) {
    this.sub = source.subscribe({
      next: (r) => {
        this.records.push(r);
        onRecord?.(r);
      },
      error: (e) => {
        this.error = e;
      },
      complete: () => {
        this.completed = true;
      },
    });
  }
  async waitFor(n: number, ms: number): Promise<ConsumedRecord[]> {
    await until(() => this.records.length >= n || this.error !== null, ms, `${n} records (got ${this.records.length})`);
    if (this.error) throw this.error;
    return this.records;
  }
  stop(): void {
    this.sub.unsubscribe();
  }
}

async function readAll(bus: Bus, options: ConsumeOptions, ms: number): Promise<ConsumedRecord[]> {
  return firstValueFrom(bus.consume({ untilEnd: true, ...options }).pipe(commitEach(), toArray(), timeout(ms)));
}

/** Commits each record as it passes (records are then "processed"). */
function commitEach() {
  return (source: Observable<ConsumedRecord>) =>
    new Observable<ConsumedRecord>((sub) =>
      source.subscribe({
        next: (r) => {
          sub.next(r);
          r.commit().catch((e) => sub.error(e));
        },
        error: (e) => sub.error(e),
        complete: () => sub.complete(),
      }),
    );
}

export function busConformanceSuite(
  name: string,
  makeBus: () => Promise<Bus>,
  opts: BusConformanceOptions = {},
): void {
  const waitMs = opts.waitMs ?? 20_000;

  async function withBus(fn: (bus: Bus) => Promise<void>): Promise<void> {
    const bus = await makeBus();
    try {
      await fn(bus);
    } finally {
      await bus.close();
    }
  }

  describe(`Bus conformance: ${name}`, () => {
    test('creates topics idempotently, lists them with end offsets, refuses to shrink', () =>
      withBus(async (bus) => {
        const topic = uniq('create');
        await bus.createTopic(topic, { partitions: 3 });
        await bus.createTopic(topic, { partitions: 3 });
        await bus.produce(topic, [0, 1, 2, 3, 4].map((i) => ({ key: null, partition: i % 3, value: encoder.encode(`v${i}`) })));
        const info = (await bus.listTopics()).find((t) => t.name === topic);
        assert.ok(info, 'topic is listed');
        assert.equal(info.partitions, 3);
        assert.deepEqual(info.endOffsets, [2, 2, 1]);
        await assert.rejects(bus.createTopic(topic, { partitions: 5 }), /partition/i);
      }));

    test('one topic-name rule: "." and "..", slashes and over-long names are refused by createTopic', () =>
      withBus(async (bus) => {
        for (const bad of ['.', '..', 'a/b', 'x'.repeat(250), '']) {
          await assert.rejects(bus.createTopic(bad, { partitions: 1 }), /topic name .* is invalid/, `refuses ${JSON.stringify(bad.slice(0, 12))}`);
        }
      }));

    test('keeps the order of records per key, and one key stays on one partition', () =>
      withBus(async (bus) => {
        const topic = uniq('order');
        await bus.createTopic(topic, { partitions: 4 });
        const keys = Array.from({ length: 10 }, (_, i) => `key-${i}`);
        const positions = [];
        for (let batch = 0; batch < 4; batch++) {
          const records = [];
          for (let i = 0; i < 50; i++) {
            const seq = batch * 50 + i;
            const key = keys[seq % keys.length];
            records.push({ key, value: encoder.encode(`${key}|${seq}`), headers: { seq: String(seq) } });
          }
          positions.push(...(await bus.produce(topic, records)));
        }
        assert.equal(positions.length, 200);
        const got = await readAll(bus, { groupId: uniq('g'), topics: [topic], from: { kind: 'beginning' } }, waitMs);
        assert.equal(got.length, 200);
        const lastSeq = new Map<string, number>();
        const partitionOf = new Map<string, number>();
        for (const r of got) {
          const [key, seqText] = text(r).split('|');
          assert.equal(r.key, key);
          assert.equal(r.headers.seq, seqText, 'headers travel with the record');
          const seq = Number(seqText);
          assert.ok(seq > (lastSeq.get(key) ?? -1), `key ${key}: ${seq} after ${lastSeq.get(key)}`);
          lastSeq.set(key, seq);
          if (partitionOf.has(key)) assert.equal(r.partition, partitionOf.get(key), `key ${key} on one partition`);
          partitionOf.set(key, r.partition);
        }
        assert.ok(new Set(partitionOf.values()).size > 1, 'ten keys spread over more than one partition');
      }));

    test('splits partitions among the members of a group: disjoint, covering all', () =>
      withBus(async (bus) => {
        const topic = uniq('group');
        const groupId = uniq('g');
        const partitions = 4;
        await bus.createTopic(topic, { partitions });
        const seen = { a: [] as Array<[number, string]>, b: [] as Array<[number, string]> };
        const a = new Gatherer(bus.consume({ groupId, topics: [topic] }).pipe(commitEach()), (r) => seen.a.push([r.partition, text(r)]));
        const b = new Gatherer(bus.consume({ groupId, topics: [topic] }).pipe(commitEach()), (r) => seen.b.push([r.partition, text(r)]));
        try {
          const produceRound = async (round: string) => {
            await bus.produce(
              topic,
              Array.from({ length: partitions }, (_, p) => ({ key: null, partition: p, value: encoder.encode(round) })),
            );
            const count = () => [...seen.a, ...seen.b].filter(([, v]) => v === round).length;
            await until(() => count() >= partitions, waitMs, `round ${round} to arrive`);
          };
          // Warm up until both members receive (a broker rebalances when the second member joins).
          let settled = false;
          for (let round = 0; round < 100 && !settled; round++) {
            await produceRound(`warm-${round}`);
            const inRound = (xs: Array<[number, string]>) => xs.some(([, v]) => v === `warm-${round}`);
            settled = inRound(seen.a) && inRound(seen.b);
            if (!settled) await sleep(100);
          }
          assert.ok(settled, 'both members received records');
          await produceRound('final');
          const pa = new Set(seen.a.filter(([, v]) => v === 'final').map(([p]) => p));
          const pb = new Set(seen.b.filter(([, v]) => v === 'final').map(([p]) => p));
          assert.ok(pa.size > 0 && pb.size > 0, `both members get partitions (a: ${[...pa]}, b: ${[...pb]})`);
          assert.deepEqual([...pa].filter((p) => pb.has(p)), [], 'no partition is read by both');
          assert.deepEqual([...new Set([...pa, ...pb])].sort(), [0, 1, 2, 3], 'every partition is read');
        } finally {
          a.stop();
          b.stop();
        }
      }));

    test('a new consumer in the group resumes after the last commit', () =>
      withBus(async (bus) => {
        const topic = uniq('resume');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 1 });
        await bus.produce(topic, Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: encoder.encode(`r${i}`) })));
        const first = new Gatherer(bus.consume({ groupId, topics: [topic] }));
        const got = await first.waitFor(10, waitMs);
        assert.deepEqual(got.map((r) => r.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        for (const r of got.slice(0, 6)) await r.commit();
        first.stop();
        assert.deepEqual(await bus.committed(groupId, topic), [6], 'committed offset = next offset to read');

        const other = await makeBus();
        try {
          const second = new Gatherer(other.consume({ groupId, topics: [topic] }));
          const again = await second.waitFor(4, waitMs);
          await sleep(100);
          assert.deepEqual(second.records.map(text), ['r6', 'r7', 'r8', 'r9'], 'uncommitted records come again, committed ones do not');
          for (const r of again) await r.commit();
          second.stop();
          assert.deepEqual(await other.committed(groupId, topic), [10]);
        } finally {
          await other.close();
        }
      }));

    test('out-of-order commits advance the committed offset only past a contiguous done prefix', () =>
      withBus(async (bus) => {
        const topic = uniq('ooo');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 1 });
        await bus.produce(topic, Array.from({ length: 8 }, (_, i) => ({ key: 'k', value: encoder.encode(`r${i}`) })));
        const g = new Gatherer(bus.consume({ groupId, topics: [topic] }));
        const got = await g.waitFor(8, waitMs);
        const committed = () => bus.committed(groupId, topic);
        await got[2].commit();
        await got[1].commit();
        await got[4].commit();
        assert.deepEqual(await committed(), [-1], 'offset 0 is not done yet: nothing committed');
        await got[0].commit();
        assert.deepEqual(await committed(), [3], '0,1,2 done');
        await got[0].commit(); // committing twice is harmless
        await got[3].commit();
        assert.deepEqual(await committed(), [5], '0..4 done');
        g.stop();
        const resumed = new Gatherer(bus.consume({ groupId, topics: [topic] }));
        await resumed.waitFor(3, waitMs);
        await sleep(100);
        assert.deepEqual(resumed.records.map((r) => r.offset), [5, 6, 7]);
        resumed.stop();
      }));

    test('seeks to the beginning, an offset and a timestamp, and replays from there', () =>
      withBus(async (bus) => {
        const topic = uniq('seek');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 1 });
        const t0 = Date.now() - 60_000;
        await bus.produce(
          topic,
          Array.from({ length: 10 }, (_, i) => ({ key: 'k', value: encoder.encode(`r${i}`), timestamp: t0 + i * 1000 })),
        );
        const all = await readAll(bus, { groupId, topics: [topic] }, waitMs);
        assert.deepEqual(all.map((r) => r.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert.deepEqual(all.map((r) => r.timestamp), all.map((_, i) => t0 + i * 1000), 'timestamps are kept');
        assert.deepEqual(await bus.committed(groupId, topic), [10]);

        const offsets = async (o: Omit<ConsumeOptions, 'groupId' | 'topics'>) =>
          (await readAll(bus, { groupId, topics: [topic], ...o }, waitMs)).map((r) => r.offset);
        assert.deepEqual(await offsets({}), [], 'everything is committed');
        assert.deepEqual(await offsets({ from: { kind: 'beginning' } }), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert.deepEqual(await offsets({ from: { kind: 'offset', partition: 0, offset: 7 } }), [7, 8, 9]);
        assert.deepEqual(await offsets({ from: { kind: 'timestamp', timestamp: t0 + 4500 } }), [5, 6, 7, 8, 9]);
        assert.deepEqual(await offsets({ from: { kind: 'end' } }), []);
        await bus.seek(groupId, topic, { kind: 'offset', partition: 0, offset: 2 });
        assert.deepEqual(await bus.committed(groupId, topic), [2], 'seek moves the committed offset');
        assert.deepEqual(await offsets({}), [2, 3, 4, 5, 6, 7, 8, 9]);
      }));

    test('untilEnd reads what is there when it starts, then completes', () =>
      withBus(async (bus) => {
        const topic = uniq('end');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 3 });
        assert.deepEqual(await readAll(bus, { groupId, topics: [topic] }, waitMs), [], 'an empty topic completes at once');
        await bus.produce(topic, Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`a${i}`) })));
        const first = await readAll(bus, { groupId, topics: [topic] }, waitMs);
        assert.deepEqual(first.map(text).sort(), Array.from({ length: 30 }, (_, i) => `a${i}`).sort());
        await bus.produce(topic, Array.from({ length: 5 }, (_, i) => ({ key: `k${i}`, value: encoder.encode(`b${i}`) })));
        const second = await readAll(bus, { groupId, topics: [topic] }, waitMs);
        assert.deepEqual(second.map(text).sort(), ['b0', 'b1', 'b2', 'b3', 'b4']);
        const total = (await bus.committed(groupId, topic)).reduce((s, c) => s + Math.max(c, 0), 0);
        assert.equal(total, 35, 'untilEnd leaves everything committed');
      }));

    test('backpressure: no more than maxInFlight records are delivered before commits', () =>
      withBus(async (bus) => {
        const topic = uniq('bp');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 2 });
        await bus.produce(topic, Array.from({ length: 60 }, (_, i) => ({ key: null, partition: i % 2, value: encoder.encode(`r${i}`) })));
        let inFlight = 0;
        let maxSeen = 0;
        const g = new Gatherer(bus.consume({ groupId, topics: [topic], maxInFlight: 5 }), () => {
          inFlight++;
          maxSeen = Math.max(maxSeen, inFlight);
        });
        try {
          await g.waitFor(5, waitMs);
          await sleep(500);
          assert.equal(g.records.length, 5, 'fetching pauses at maxInFlight');
          await g.records[0].commit();
          inFlight--;
          await g.waitFor(6, waitMs);
          await sleep(300);
          assert.equal(g.records.length, 6, 'one commit lets exactly one more in');
          // Now process everything, committing asynchronously as a real stage would.
          let committedUpTo = 1;
          await until(
            () => {
              while (committedUpTo < g.records.length) {
                const r = g.records[committedUpTo++];
                setTimeout(() => r.commit().then(() => inFlight--), 1);
              }
              return g.records.length >= 60;
            },
            waitMs,
            'all 60 records',
          );
          assert.ok(maxSeen <= 5, `in-flight never exceeded 5 (saw ${maxSeen})`);
        } finally {
          g.stop();
        }
      }));

    test('produceAndCommit writes outputs and commits inputs atomically', () =>
      withBus(async (bus) => {
        const input = uniq('pac-in');
        const output = uniq('pac-out');
        const groupId = uniq('g');
        await bus.createTopic(input, { partitions: 1 });
        await bus.createTopic(output, { partitions: 2 });
        await bus.produce(input, ['x0', 'x1', 'x2'].map((v) => ({ key: 'k', value: encoder.encode(v) })));
        const g = new Gatherer(bus.consume({ groupId, topics: [input] }));
        const got = await g.waitFor(3, waitMs);
        await bus.produceAndCommit(groupId, [{ topic: output, records: [{ key: 'k', value: encoder.encode('y0') }] }], [got[0]]);
        assert.deepEqual(await bus.committed(groupId, input), [1]);
        await got[0].commit(); // the record's own commit after produceAndCommit changes nothing
        assert.deepEqual(await bus.committed(groupId, input), [1]);

        await assert.rejects(
          bus.produceAndCommit(
            groupId,
            [
              { topic: output, records: [{ key: 'k', value: encoder.encode('y1') }] },
              { topic: output, records: [{ key: 'k', partition: 99, value: encoder.encode('bad') }] },
            ],
            [got[1]],
          ),
          /partition/i,
        );
        assert.deepEqual(await bus.committed(groupId, input), [1], 'a failed produceAndCommit commits nothing');
        const out = await readAll(bus, { groupId: uniq('reader'), topics: [output], from: { kind: 'beginning' } }, waitMs);
        assert.deepEqual(out.map(text), ['y0'], 'a failed produceAndCommit writes nothing');
        g.stop();

        const again = new Gatherer(bus.consume({ groupId, topics: [input] }));
        await again.waitFor(2, waitMs);
        assert.deepEqual(again.records.map(text), ['x1', 'x2'], 'the failed input comes again');
        again.stop();
      }));

    test('close() waits for in-flight records to be committed', () =>
      withBus(async (bus) => {
        const topic = uniq('drain');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 1 });
        await bus.produce(topic, Array.from({ length: 5 }, (_, i) => ({ key: 'k', value: encoder.encode(`r${i}`) })));
        const closing = await makeBus();
        const g = new Gatherer(closing.consume({ groupId, topics: [topic] }));
        const got = await g.waitFor(5, waitMs);
        let committedAll = false;
        setTimeout(async () => {
          for (const r of got) await r.commit();
          committedAll = true;
        }, 200);
        await closing.close();
        assert.ok(committedAll, 'close returned only after the commits');
        assert.ok(g.completed, 'the consumer completes on close');
        assert.deepEqual(await bus.committed(groupId, topic), [5]);
      }));

    test('malformed records go to dead-letter with their reason and the stream goes on', () =>
      withBus(async (bus) => {
        const topic = uniq('prompts');
        const dlq = uniq('dead-letter');
        const groupId = uniq('g');
        await bus.createTopic(topic, { partitions: 1 });
        await bus.createTopic(dlq, { partitions: 1 });
        const good = (id: string): PromptRecord => ({ promptId: id, text: `say ${id} ✓`, messages: null, source: 'test', arrivalTime: 1700000000000 });
        await bus.produce(topic, [
          { key: 'p1', value: promptsTopic.encode(good('p1')) },
          { key: 'bad', value: encoder.encode('{"not":"arrow"}') },
          { key: 'p2', value: promptsTopic.encode(good('p2')) },
        ]);
        const decoded = await firstValueFrom(
          bus
            .consume({ groupId, topics: [topic] })
            .pipe(decodeOrDeadLetter(bus, promptsTopic, { groupId, deadLetterTopic: dlq }), take(2), toArray(), timeout(waitMs)),
        );
        assert.deepEqual(decoded.map((d) => d.value), [good('p1'), good('p2')]);
        for (const d of decoded) await d.record.commit();
        assert.deepEqual(await bus.committed(groupId, topic), [3], 'the bad record is committed with the good ones');
        const dead = await readAll(bus, { groupId: uniq('reader'), topics: [dlq] }, waitMs);
        assert.equal(dead.length, 1);
        assert.equal(dead[0].key, topic);
        const letter = deadLetterTopic.decode(dead[0].value);
        assert.equal(letter.sourceTopic, topic);
        assert.equal(letter.offset, 1);
        assert.equal(letter.key, 'bad');
        assert.match(letter.error, /prompts/);
        assert.deepEqual(letter.value, encoder.encode('{"not":"arrow"}'));
      }));
  });
}
