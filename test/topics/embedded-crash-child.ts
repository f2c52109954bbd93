/**
 * The child of embedded-crash.test.ts: produces N input records (resuming where the topic ends) and
 * runs a consume-transform-produce stage over them with produceAndCommit, 8 records in flight
 * (so they finish out of order). Exits 0 once the output topic holds N records. The parent kills it
 * with SIGKILL mid-stream and starts it again.
 */
import { mergeMap } from 'rxjs';
import { openEmbeddedBus } from '../../topics/embedded.ts';

const [path, nText] = process.argv.slice(2);
const N = Number(nText);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const count = async (topic: string) =>
  (await bus.listTopics()).find((t) => t.name === topic)!.endOffsets.reduce((s, n) => s + n, 0);

const bus = await openEmbeddedBus(path);
await bus.createTopic('in', { partitions: 3 });
await bus.createTopic('out', { partitions: 2 });

void (async () => {
  // Each produce() is one transaction, so the topic's record count says exactly what was produced.
  for (let produced = await count('in'); produced < N; ) {
    const upTo = Math.min(N, produced + 20);
    const records = [];
    for (let i = produced; i < upTo; i++) records.push({ key: `k${i % 7}`, value: encoder.encode(`m${i}`) });
    await bus.produce('in', records);
    produced = upTo;
    await sleep(2);
  }
})();

bus
  .consume({ groupId: 'stage', topics: ['in'], maxInFlight: 50 })
  .pipe(
    mergeMap(async (r) => {
      await sleep((r.offset * 7) % 5);
      const out = encoder.encode(`${decoder.decode(r.value)}!`);
      await bus.produceAndCommit('stage', [{ topic: 'out', records: [{ key: r.key, value: out }] }], [r]);
    }, 8),
  )
  .subscribe({ error: (e) => { console.error(e); process.exit(2); } });

while ((await count('out')) < N) await sleep(20);
process.stdout.write('done\n');
process.exit(0);
