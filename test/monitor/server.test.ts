import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { boundEvent } from '../../src/monitor/events.ts';
import { EventHistory } from '../../src/monitor/history.ts';
import { CLOSE_FORBIDDEN_ORIGIN, CLOSE_UNAUTHORIZED, packEvents, startMonitor, type Monitor } from '../../src/monitor/server.ts';
import { openEmbeddedBus, type EmbeddedBus } from '../../topics/embedded.ts';
import { checkpointsTopic } from '../../topics/checkpoints.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { createPipelineTopics, topicName } from '../../topics/registry.ts';
import { connect, eventually } from './helpers.ts';

const wsUrl = (m: Monitor, query = '') => `ws://127.0.0.1:${m.port}/ws${query}`;
const httpUrl = (m: Monitor, path = '/') => `http://127.0.0.1:${m.port}${path}`;

describe('monitor history and framing', () => {
  it('keeps the newest events of each kind, so a flood of steps cannot evict checkpoints', () => {
    const h = new EventHistory({ maxEvents: 3, maxMilestones: 2, maxBusObservations: 1 });
    h.add({ stage: 'checkpoint', type: 'checkpoint', time: 0, version: 1 });
    for (let i = 0; i < 10; i++) h.add({ stage: 'train', type: 'step', time: i, step: i });
    h.add({ stage: 'bus', type: 'throughput', time: 11 });
    h.add({ stage: 'bus', type: 'throughput', time: 12 });
    const snap = h.snapshot();
    assert.deepEqual(
      snap.map((e) => [e.stage, e.seq]),
      [['checkpoint', 1], ['train', 9], ['train', 10], ['train', 11], ['bus', 13]],
    );
    assert.equal(h.evicted, 8);
    assert.equal(h.lastSeq, 13);
  });

  it('truncates an oversized event to its identity and scalars, marked', () => {
    const big = { stage: 'score', type: 'group', time: 5, round: 2, seq: 9, meanReward: 0.5, text: 'x'.repeat(5000), nested: { a: 1 } };
    const { event, json } = boundEvent(big, 1024);
    assert.ok(Buffer.byteLength(json) <= 1024);
    assert.equal(event.truncated, true);
    assert.equal(event.originalBytes, Buffer.byteLength(JSON.stringify(big)));
    assert.deepEqual([event.stage, event.type, event.time, event.round, event.seq, event.meanReward], ['score', 'group', 5, 2, 9, 0.5]);
    assert.equal((event.text as string).length, 201);
    assert.equal(event.nested, undefined);
    const small = { stage: 's', type: 't', time: 1 };
    assert.equal(boundEvent(small, 1024).event, small);
  });

  it('packs events into messages no bigger than the limit, losing none', () => {
    const jsons = Array.from({ length: 50 }, (_, i) => JSON.stringify({ stage: 's', type: 't', time: i, pad: 'p'.repeat(i * 7) }));
    const messages = packEvents(jsons, 1200);
    assert.ok(messages.length > 1);
    for (const m of messages) assert.ok(Buffer.byteLength(m) <= 1200, `message of ${Buffer.byteLength(m)} bytes`);
    assert.deepEqual(messages.flatMap((m) => JSON.parse(m).events.map((e: any) => e.time)), jsons.map((_, i) => i));
  });
});

describe('monitor server (publish path)', () => {
  let monitor: Monitor;
  before(async () => {
    monitor = await startMonitor({ port: 0, maxMessageBytes: 4096, maxEventBytes: 2048, flushIntervalMs: 20 });
  });
  after(() => monitor.close());

  it('sends a late-joining client the history so far, then live events, in order', async () => {
    for (let i = 0; i < 5; i++) monitor.publish({ stage: 'train', type: 'step', round: 1, step: i, loss: 0.7 - i / 100 });
    const c = connect(wsUrl(monitor));
    const hello = await c.until((m) => m.kind === 'hello');
    assert.equal(hello.historyEvents, 5);
    await c.until((m) => m.kind === 'live');
    monitor.publish({ stage: 'alpha', type: 'window', round: 1, alpha: 0.02 });
    await eventually('the live event', () => c.events().length === 6);
    const events = c.events();
    assert.deepEqual(events.map((e) => e.seq), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(events.slice(0, 5).map((e) => e.step), [0, 1, 2, 3, 4]);
    assert.equal(events[5].alpha, 0.02);
    assert.equal(c.messages.findIndex((m) => m.kind === 'live') < c.messages.findIndex((m) => m.kind === 'events' && m.events.some((e: any) => e.seq === 6)), true);
    c.ws.close();
  });

  it('bounds every message it sends: big events truncated, bursts batched', async () => {
    const c = connect(wsUrl(monitor));
    await c.until((m) => m.kind === 'live');
    const before = c.events().length;
    monitor.publish({ stage: 'sample', type: 'group', round: 1, text: 'y'.repeat(100_000), tokens: 12 });
    for (let i = 0; i < 200; i++) monitor.publish({ stage: 'score', type: 'group', round: 1, i, meanReward: i / 200 });
    await eventually('201 live events', () => c.events().length === before + 201);
    for (const size of c.sizes) assert.ok(size <= 4096, `a message of ${size} bytes exceeds the 4096 limit`);
    const big = c.events()[before];
    assert.equal(big.truncated, true);
    assert.equal(big.tokens, 12);
    assert.deepEqual(c.events().slice(before + 1).map((e) => e.i), Array.from({ length: 200 }, (_, i) => i));
    // The truncated form is what a late joiner gets too, while the history keeps the event whole.
    assert.equal((monitor.history().find((e) => e.stage === 'sample')!.text as string).length, 100_000);
    c.ws.close();
  });

  it('rejects malformed published events with a message naming the field', () => {
    assert.throws(() => monitor.publish({ stage: '', type: 't' }), /"stage" must be a non-empty string/);
    assert.throws(() => monitor.publish({ stage: 's', type: 't', time: Number.NaN }), /"time" must be a finite number/);
  });

  it('serves the dashboard, its script and uPlot; nothing else; GET only', async () => {
    const page = await fetch(httpUrl(monitor));
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    assert.match(page.headers.get('content-security-policy')!, /default-src 'self'/);
    const html = await page.text();
    assert.match(html, /vendor\/uPlot\.iife\.min\.js/);
    const uplot = await fetch(httpUrl(monitor, '/vendor/uPlot.iife.min.js'));
    assert.equal(uplot.status, 200);
    assert.match(await uplot.text(), /uPlot/);
    assert.equal((await fetch(httpUrl(monitor, '/app.js'))).status, 200);
    assert.equal((await fetch(httpUrl(monitor, '/../package.json'))).status, 404);
    assert.equal((await fetch(httpUrl(monitor, '/etc/passwd'))).status, 404);
    assert.equal((await fetch(httpUrl(monitor), { method: 'POST', body: '{}' })).status, 405);
  });

  it('is read-only: what clients send changes nothing, and an oversized frame only drops that client', async () => {
    const watcher = connect(wsUrl(monitor));
    await watcher.until((m) => m.kind === 'live');
    const historyBefore = JSON.stringify(monitor.history());
    const ignoredBefore = monitor.ignoredClientMessages;
    const talker = connect(wsUrl(monitor));
    await talker.until((m) => m.kind === 'live');
    const talkerEventsBefore = talker.events().length;
    talker.ws.send(JSON.stringify({ kind: 'publish', event: { stage: 'evil', type: 'inject', time: 1 } }));
    talker.ws.send(JSON.stringify({ stage: 'evil', type: 'inject', time: 1 }));
    talker.ws.send('clear');
    talker.ws.send(Buffer.from([0, 1, 2, 3]));
    await eventually('the server to count 4 ignored frames', () => monitor.ignoredClientMessages === ignoredBefore + 4);
    await new Promise((r) => setTimeout(r, 100)); // a flush interval or more
    assert.equal(JSON.stringify(monitor.history()), historyBefore);
    assert.ok(!watcher.events().some((e) => e.stage === 'evil'));
    assert.equal(talker.events().length, talkerEventsBefore);

    talker.ws.send('z'.repeat(10_000)); // over the 1 KiB incoming limit
    const { code } = await talker.closed;
    assert.equal(code, 1009);
    monitor.publish({ stage: 'after', type: 'still-serving' });
    await watcher.until((m) => m.kind === 'events' && m.events.some((e: any) => e.stage === 'after'));
    watcher.ws.close();
  });
});

describe('monitor server with a token', () => {
  let monitor: Monitor;
  before(async () => {
    monitor = await startMonitor({ port: 0, token: 's3cret-token' });
    monitor.publish({ stage: 'train', type: 'step', round: 1, loss: 0.5 });
  });
  after(() => monitor.close());

  it('refuses HTTP requests without the token (401) and accepts ?token=, Bearer and the cookie it sets', async () => {
    assert.equal((await fetch(httpUrl(monitor))).status, 401);
    assert.equal((await fetch(httpUrl(monitor, '/app.js'))).status, 401);
    assert.equal((await fetch(httpUrl(monitor, '/?token=wrong'))).status, 401);
    const ok = await fetch(monitor.url);
    assert.equal(ok.status, 200);
    const cookie = ok.headers.get('set-cookie')!;
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.equal((await fetch(httpUrl(monitor, '/app.js'), { headers: { cookie: cookie.split(';')[0] } })).status, 200);
    assert.equal((await fetch(httpUrl(monitor, '/app.js'), { headers: { authorization: 'Bearer s3cret-token' } })).status, 200);
  });

  it('closes a websocket without the token (4401) before sending it anything', async () => {
    for (const query of ['', '?token=nope']) {
      const c = connect(wsUrl(monitor, query));
      const { code } = await c.closed;
      assert.equal(code, CLOSE_UNAUTHORIZED);
      assert.equal(c.messages.length, 0, 'no data reaches an unauthorized client');
    }
    assert.equal(monitor.clients, 0);
  });

  it('accepts a websocket with the token and sends it the history', async () => {
    const c = connect(wsUrl(monitor, '?token=s3cret-token'));
    await c.until((m) => m.kind === 'live');
    assert.equal(c.events()[0].loss, 0.5);
    const d = connect(wsUrl(monitor), { headers: { authorization: 'Bearer s3cret-token' } });
    await d.until((m) => m.kind === 'live');
    c.ws.close();
    d.ws.close();
  });

  it('refuses a browser connection from another origin even with the token', async () => {
    const c = connect(wsUrl(monitor, '?token=s3cret-token'), { origin: 'http://evil.example' });
    assert.equal((await c.closed).code, CLOSE_FORBIDDEN_ORIGIN);
    assert.equal(c.messages.length, 0);
  });

  it('will not bind beyond loopback without a token', async () => {
    await assert.rejects(startMonitor({ port: 0, host: '0.0.0.0' }), /set a token/);
  });
});

describe('monitor server reading a bus', () => {
  let dir: string;
  let bus: EmbeddedBus;
  let monitor: Monitor;
  const NS = 'mon';
  const enc = new TextEncoder();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dice-monitor-'));
    bus = await openEmbeddedBus(join(dir, 'bus.db'));
    // Started before the run's topics exist: it picks them up when they appear.
    monitor = await startMonitor({ bus, port: 0, namespace: NS, pollIntervalMs: 100, lagGroups: [{ groupId: 'sampler', topics: [topicName(NS, 'prompts')] }] });
  });
  after(async () => {
    await monitor.close();
    await bus.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the metrics and checkpoints topics from the beginning, then live', async () => {
    await createPipelineTopics(bus, NS);
    await createPipelineTopics(bus, 'other');
    const metric = (i: number) => metricsTopic.encode({ stage: 'train', type: 'step', time: 1000 + i, round: 1, step: i, loss: 0.69 - i / 100 });
    await bus.produce(topicName(NS, 'metrics'), [0, 1, 2].map((i) => ({ key: 'train', value: metric(i) })));
    await bus.produce(topicName('other', 'metrics'), [{ key: 'train', value: metric(99) }]);
    await bus.produce(topicName(NS, 'checkpoints'), [{
      key: '1',
      value: checkpointsTopic.encode({ version: 1, parentVersion: 0, referenceVersion: 0, round: 1, location: '/ckpt/v1', sha256: 'a'.repeat(64), metrics: { finalLoss: 0.6 }, createdAt: 5000 }),
    }]);
    await bus.produce(topicName(NS, 'metrics'), [{ key: 'x', value: enc.encode('{"not":"an event"}') }]);
    await eventually('the bus events in the history', () => monitor.history().filter((e) => e.stage !== 'bus').length === 5);

    const c = connect(wsUrl(monitor));
    await c.until((m) => m.kind === 'live');
    const events = c.events().filter((e) => e.stage !== 'bus');
    const steps = events.filter((e) => e.type === 'step');
    assert.deepEqual(steps.map((e) => e.step), [0, 1, 2], 'only this namespace, in order');
    const cp = events.find((e) => e.type === 'checkpoint')!;
    assert.deepEqual([cp.stage, cp.version, cp.parentVersion, cp.sha256, cp.time, (cp.metrics as any).finalLoss], ['checkpoint', 1, 0, 'a'.repeat(64), 5000, 0.6]);
    const bad = events.find((e) => e.type === 'invalid-record')!;
    assert.match(bad.error as string, /"stage" and "type"/);

    await bus.produce(topicName(NS, 'metrics'), [{ key: 'train', value: metric(3) }]);
    await c.until((m) => m.kind === 'events' && m.events.some((e: any) => e.step === 3));
    c.ws.close();
  });

  it('observes per-topic throughput and consumer lag of the run', async () => {
    const prompts = topicName(NS, 'prompts');
    await bus.produce(prompts, Array.from({ length: 6 }, (_, i) => ({ key: `p${i}`, value: enc.encode('{}'), partition: 0 })));
    const lag = await eventually('a lag observation of 6', () =>
      monitor.history().find((e) => e.stage === 'bus' && e.type === 'lag' && (e.lag as any)[`sampler/${prompts}`] === 6),
    );
    assert.ok(lag);
    const tp = await eventually('a throughput observation with prompts written', () =>
      monitor.history().find((e) => e.stage === 'bus' && e.type === 'throughput' && (e.ends as any)[prompts] === 6),
    );
    assert.ok(Object.keys(tp!.rates as object).every((name) => name.startsWith(`${NS}.`)), 'only the run namespace');
  });
});

describe('--monitor flag', () => {
  it('parses [HOST:]PORT, loopback by default', async () => {
    const { parseMonitorAddress } = await import('../../src/monitor/flags.ts');
    assert.deepEqual(parseMonitorAddress('8787'), { host: '127.0.0.1', port: 8787 });
    assert.deepEqual(parseMonitorAddress('0.0.0.0:9000'), { host: '0.0.0.0', port: 9000 });
    assert.deepEqual(parseMonitorAddress('[::1]:0'), { host: '::1', port: 0 });
    assert.throws(() => parseMonitorAddress('localhost'), /\[HOST:\]PORT/);
    assert.throws(() => parseMonitorAddress('70000'), /out of range/);
  });
});
