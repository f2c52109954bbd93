import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startMonitor, type Monitor } from '../../src/monitor/server.ts';
import { MetricsEmitter } from '../../src/service/metrics.ts';
import { stageEvent } from '../../src/stages/stage.ts';
import { checkpointsTopic } from '../../topics/checkpoints.ts';
import { openEmbeddedBus, type EmbeddedBus } from '../../topics/embedded.ts';
import { createPipelineTopics, topicName } from '../../topics/registry.ts';

/**
 * The dashboard in a real browser (Debian's chromium, driven by playwright-core) while a small run
 * is simulated on an embedded bus: stage metrics through the run's MetricsEmitter onto the metrics
 * topic, checkpoints onto the checkpoints topic. The monitor reads the bus, as `dice monitor` does.
 */

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const NS = 'demo';
const TOKEN = 'dashboard-test-token';

async function simulateRound(bus: EmbeddedBus, metrics: MetricsEmitter, round: number): Promise<void> {
  const policy = round - 1;
  // Prompts nobody consumes yet: the sampler group's lag grows.
  await bus.produce(topicName(NS, 'prompts'), Array.from({ length: 4 }, (_, i) => ({ key: `r${round}p${i}`, value: new TextEncoder().encode('{}') })));
  metrics.emit('round', 'start', round, { policyVersion: policy, referenceVersion: Math.max(0, policy - 1), prompts: 8 });
  for (let w = 0; w < 3; w++) {
    metrics.emit('sample', 'group', round, { promptId: `p${w}`, tokens: 120, tokensPerSecond: 900 + 40 * w, meanLength: 60 });
    metrics.emit('score', 'group', round, { promptId: `p${w}`, meanReward: 0.1 * w, rewardSpread: 0.4 });
    metrics.emit('alpha', 'window', round, { windowId: w, alpha: 0.004 * (w + 1) * round, objective: 0.5, lengthDiffBefore: 24 - 3 * w, lengthDiffAfter: 0.5 - w * 0.25, pairs: 4 });
  }
  for (let s = 0; s < 5; s++) {
    metrics.emit('train', 'step', round, { step: s, loss: 0.69 - 0.03 * s - 0.1 * (round - 1), rewardAccuracy: 0.5 + 0.08 * s, chosenReward: 0.1 * s, rejectedReward: -0.05 * s, margin: 0.15 * s });
  }
  metrics.emit('eval', 'eval', round, { version: round, winRate: 0.4 + 0.05 * round, lcWinRate: 0.35 + 0.06 * round, avgLength: 300 - 10 * round });
  await metrics.flush();
  await bus.produce(topicName(NS, 'checkpoints'), [{
    key: String(round),
    value: checkpointsTopic.encode({
      version: round,
      parentVersion: round - 1,
      referenceVersion: round - 1,
      round,
      location: `/runs/demo/v${round}`,
      sha256: String(round).repeat(64),
      metrics: { finalLoss: 0.6 - 0.1 * round },
      createdAt: Date.now(),
    }),
  }]);
}

const dataset = (page: Page, id: string) => page.$eval(`#${id}`, (el) => ({ ...(el as HTMLElement).dataset }));
const points = (page: Page, id: string) => page.$eval(`#${id}`, (el) => Number((el as HTMLElement).dataset.points));
const facts = (page: Page) =>
  page.evaluate(() => ({ round: document.body.dataset.round, policy: document.body.dataset.policyVersion, reference: document.body.dataset.referenceVersion, status: document.body.dataset.status }));

describe('dashboard in chromium', () => {
  let dir: string;
  let bus: EmbeddedBus;
  let monitor: Monitor;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  const lagGroups = [{ groupId: 'demo-sampler', topics: [topicName(NS, 'prompts')] }];

  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does)`);
    dir = await mkdtemp(join(tmpdir(), 'dice-dashboard-'));
    bus = await openEmbeddedBus(join(dir, 'bus.db'));
    await createPipelineTopics(bus, NS);
    monitor = await startMonitor({ bus, port: 0, namespace: NS, token: TOKEN, pollIntervalMs: 200, lagGroups });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
  });

  after(async () => {
    await browser?.close();
    await monitor?.close();
    await bus?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('fills the charts and follows the round and versions while a run goes on', async () => {
    const metrics = new MetricsEmitter(bus, NS);
    await simulateRound(bus, metrics, 1); // before the page opens: it arrives as history

    await page.goto(monitor.url);
    await page.waitForFunction(() => document.body.dataset.status === 'live');
    await page.waitForFunction(() => document.body.dataset.round === '1' && document.body.dataset.policyVersion === '1');
    assert.deepEqual(await facts(page), { round: '1', policy: '1', reference: '0', status: 'live' });
    await page.waitForFunction(() => Number((document.querySelector('#chart-loss') as HTMLElement).dataset.points) === 5);

    await simulateRound(bus, metrics, 2); // live
    await page.waitForFunction(() => document.body.dataset.round === '2' && document.body.dataset.policyVersion === '2');
    assert.deepEqual(await facts(page), { round: '2', policy: '2', reference: '1', status: 'live' });
    await page.waitForFunction(() => Number((document.querySelector('#chart-loss') as HTMLElement).dataset.points) === 10);

    assert.equal(await points(page, 'chart-alpha'), 6);
    assert.equal(await points(page, 'chart-lengthdiff'), 6);
    assert.equal(await points(page, 'chart-accuracy'), 10);
    assert.equal(await points(page, 'chart-margin'), 10);
    // α* (0.004 … 0.024 here) on an axis of its own magnitude; margins per training step, like the loss.
    const alpha = await dataset(page, 'chart-alpha');
    assert.ok(Number(alpha.yMin) <= 0.004 && Number(alpha.yMax) >= 0.024 && Number(alpha.yMax) <= 0.24, `α* axis ${alpha.yMin}..${alpha.yMax}`);
    assert.deepEqual(JSON.parse((await dataset(page, 'chart-lengthdiff')).seriesPoints!), { 'before shaping (α=0)': 6, 'after shaping (α*)': 6 });
    assert.deepEqual([(await dataset(page, 'chart-margin')).xMax, (await dataset(page, 'chart-loss')).xMax], ['10', '10']);
    assert.equal(await points(page, 'chart-eval'), 2);
    await page.waitForFunction(() => Number((document.querySelector('#chart-throughput') as HTMLElement).dataset.points) > 6);
    const series = await page.$eval('#chart-throughput', (el) => (el as HTMLElement).dataset.series!.split(','));
    assert.ok(series.includes('demo.metrics') && series.includes('sample tokens/s'), `throughput series: ${series}`);
    await page.waitForFunction(() => (document.querySelector('#chart-lag') as HTMLElement).dataset.series === 'demo-sampler/demo.prompts');
    // uPlot drew every chart.
    assert.equal(await page.locator('.panel canvas').count(), 8);

    const timeline = await page.$$eval('#checkpoints tbody tr', (rows) => rows.map((r) => [...(r as HTMLTableRowElement).cells].map((c) => c.textContent)));
    assert.deepEqual(timeline.map((r) => [r[1], r[2], r[4]]), [['2', '1', '2'], ['1', '0', '1']], 'one row per version, newest first');
    assert.equal(timeline[0][5], '2222222222222222');
    const evalRows = await page.locator('#evaluations tbody tr').count();
    assert.equal(evalRows, 2);

    // An event type the dashboard does not chart is still shown, marked, in the raw log.
    metrics.emit('testbed', 'mystery', 2, { note: 'shown raw' });
    await metrics.flush();
    await page.waitForSelector('#event-log tr.unknown >> text=mystery');

    await mkdir('test-artifacts', { recursive: true });
    await page.screenshot({ path: 'test-artifacts/monitor.png', fullPage: true });
    assert.deepEqual(pageErrors, []);
  });

  it('shows each version’s health, promoted/rejected marks on the checkpoint timeline, and an alert line when the gate fails', async () => {
    const metrics = new MetricsEmitter(bus, NS);
    const health = (version: number, promoted: boolean, rankingTau: number | null) =>
      stageEvent('health/version', { version, parentVersion: version - 1, promoted, roundAccuracy: promoted ? 0.75 : 0.25, cumulativeAccuracy: promoted ? 0.8 : 0.4, previousCumulativeAccuracy: 0.7, rankingTau, probeLength: 42, lengthChange: promoted ? 0.05 : 0.5, kl: 1.25 });
    metrics.stageEvent(health(1, true, 0.5), 1);
    metrics.stageEvent(health(2, false, null), 2);
    metrics.stageEvent(stageEvent('health/gate-failed', { version: 2, parentVersion: 1, reasons: 'held-out accuracy of the round reward 0.25 < 0.5' }), 2);
    await metrics.flush();
    await page.waitForFunction(() => document.querySelectorAll('#health tbody tr').length === 2);
    const rows = await page.$$eval('#health tbody tr', (rs) => rs.map((r) => [r.className, ...[...(r as HTMLTableRowElement).cells].slice(1).map((c) => c.textContent)]));
    assert.deepEqual(rows, [
      ['rejected', '2', '1', 'rejected', '0.250', '0.400 (0.700)', '–', '42.0 (+50.0 %)', '1.250'],
      ['promoted', '1', '0', 'promoted', '0.750', '0.800 (0.700)', '0.500', '42.0 (+5.0 %)', '1.250'],
    ]);
    const marks = await page.$$eval('#checkpoints tbody tr', (rs) => rs.map((r) => [r.className, (r as HTMLTableRowElement).cells[1].textContent, (r as HTMLTableRowElement).cells[7].textContent]));
    assert.deepEqual(marks, [['rejected', '2', 'rejected'], ['promoted', '1', 'promoted']]);
    const alerts = await page.$$eval('#alerts li', (ls) => ls.map((l) => l.textContent));
    assert.deepEqual(alerts, ['health gate failed: v2 rejected, samplers and scorers stay on v1 — held-out accuracy of the round reward 0.25 < 0.5']);
    assert.deepEqual(pageErrors, []);
  });

  it('shows dice serve’s busy/waiting time per role and round, its engine switches and the staleness histogram of each round’s pairs', async () => {
    const metrics = new MetricsEmitter(bus, NS);
    metrics.stageEvent(stageEvent('serve/role-time', { role: 'sampler', seconds: 10, busySeconds: 7.5, waitingSeconds: 2.5, utilisation: 0.75 }), 1);
    metrics.stageEvent(stageEvent('serve/role-time', { role: 'trainer', seconds: 10, busySeconds: 4, waitingSeconds: 6, utilisation: 0.4 }), 1);
    metrics.stageEvent(stageEvent('train/staleness', { policyVersion: 1, maxStaleness: 1, groups: 4, pairs: 3, histogram: '[1,2]', meanStaleness: 2 / 3, dropped: 1 }), 2);
    metrics.stageEvent(stageEvent('serve/engine-switch', { role: 'sampler', fromVersion: 0, toVersion: 1, seconds: 0.25 }), 2);
    metrics.stageEvent(stageEvent('serve/engine-switch', { role: 'scorer', fromVersion: null, toVersion: 0, seconds: 1.5 }), 1);
    await metrics.flush();
    await page.waitForFunction(() => document.querySelectorAll('#role-time tbody tr').length === 2 && document.querySelectorAll('#staleness tbody tr').length === 1 && document.querySelectorAll('#engine-switches tbody tr').length === 2);
    const cells = (id: string) => page.$$eval(`#${id} tbody tr`, (rs) => rs.map((r) => [...(r as HTMLTableRowElement).cells].slice(1).map((c) => c.textContent)));
    assert.deepEqual(await cells('role-time'), [['1', 'trainer', '4.00', '6.00', '40 %'], ['1', 'sampler', '7.50', '2.50', '75 %']]);
    assert.deepEqual(await cells('staleness'), [['2', '1', '[1,2]', '0.67', '1', '1']]);
    assert.deepEqual(await cells('engine-switches'), [['1', 'scorer', '– → v0', '1.50'], ['2', 'sampler', 'v0 → v1', '0.25']]);
    assert.deepEqual(pageErrors, []);
  });

  it('reconnects after the server restarts and gets the history again', async () => {
    const port = monitor.port;
    await monitor.close();
    await page.waitForFunction(() => document.body.dataset.status === 'reconnecting');
    monitor = await startMonitor({ bus, port, namespace: NS, token: TOKEN, pollIntervalMs: 200, lagGroups });
    // The page's cookie carries the token to the new server.
    await page.waitForFunction(() => document.body.dataset.status === 'live', undefined, { timeout: 15_000 });
    await page.waitForFunction(() => document.body.dataset.round === '2' && Number((document.querySelector('#chart-loss') as HTMLElement).dataset.points) === 10);
    assert.deepEqual(await facts(page), { round: '2', policy: '2', reference: '1', status: 'live' });
    assert.deepEqual(pageErrors, []);
  });
});
