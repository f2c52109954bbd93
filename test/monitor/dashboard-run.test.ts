import { strict as assert } from 'node:assert';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { CliProcess, makeRunFixture } from '../service/run-helpers.ts';

/** The dashboard of a real `dice run --monitor` (tiny models), watched in Debian's chromium while the run goes on. */
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

let browser: Browser | undefined;
let run: CliProcess | undefined;
after(async () => {
  await browser?.close();
  await run?.stop('SIGKILL');
});

it('a real dice run: the page fills its charts and follows rounds 1 → 2 and versions v0 → v2', async () => {
  const { dir, args } = makeRunFixture();
  const port = await freePort();
  // More steps than the other run tests, so each round lasts long enough to be watched live. Seed 1
  // (not the fixture's 7, whose windows all have α* = 0 and so before = after): its windows have
  // α* ~ 3e-4 and 2e-3 with different length differences before and after shaping.
  const runArgs = [...args, '--out', join(dir, 'out'), '--steps', '25', '--seed', '1', '--monitor', `127.0.0.1:${port}`];
  run = new CliProcess(runArgs);
  const line = await run.waitFor(/"msg":"monitor"/);
  const url = JSON.parse(line).url as string;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.status === 'live');
  // Record every (round, policy version) the header shows while the run goes on.
  const seen = new Set<string>();
  for (let i = 0; i < 600; i++) {
    const f = await page.evaluate(() => `${document.body.dataset.round}/${document.body.dataset.policyVersion}`);
    seen.add(f);
    if (f === '2/2') break;
    await page.waitForTimeout(100);
  }
  assert.ok(seen.has('2/2'), `the page reached round 2 with policy v2: ${[...seen].join(' ')}`);
  assert.ok([...seen].some((f) => f.startsWith('1/')), `the page showed round 1 before round 2: ${[...seen].join(' ')}`);
  await page.waitForFunction(() => Number((document.querySelector('#chart-loss') as HTMLElement).dataset.points) === 50);
  const points = (id: string) => page.$eval(`#${id}`, (el) => Number((el as HTMLElement).dataset.points));
  const panel = (id: string) => page.$eval(`#${id}`, (el) => ({ ...(el as HTMLElement).dataset }));
  assert.equal(await points('chart-alpha'), 2, 'one α* window per round');
  assert.equal(await points('chart-accuracy'), 50);

  // The run's own log of its α windows, to hold the charts against.
  const windows = run.stderr.split('\n').filter((l) => l.includes('"msg":"alpha window"')).map((l) => JSON.parse(l) as { alpha: number; lengthDiffBefore: number; lengthDiffAfter: number });
  assert.equal(windows.length, 2);
  const alphas = windows.map((w) => w.alpha);
  const maxAlpha = Math.max(...alphas);
  assert.ok(maxAlpha > 0, `seed 1 gives some window α* > 0: ${alphas}`);
  // The α* axis fits the values (uPlot's default would be 0..100 for values ~1e-4 … or all zeros).
  await page.waitForFunction(() => (document.querySelector('#chart-alpha') as HTMLElement).dataset.yMax !== undefined);
  const alpha = await panel('chart-alpha');
  assert.ok(Number(alpha.yMax) >= maxAlpha && Number(alpha.yMax) <= 10 * maxAlpha, `α* axis ${alpha.yMin}..${alpha.yMax} for α* ${alphas}`);
  assert.ok(Number(alpha.yMin) <= Math.min(...alphas), `α* axis ${alpha.yMin}..${alpha.yMax} for α* ${alphas}`);

  // Both length-difference series are drawn, one point per window, and the axis covers them all.
  const lengths = await panel('chart-lengthdiff');
  assert.deepEqual(JSON.parse(lengths.seriesPoints!), { 'before shaping (α=0)': 2, 'after shaping (α*)': 2 });
  assert.ok(windows.some((w) => w.lengthDiffBefore !== w.lengthDiffAfter), 'shaping changed a window');
  const diffs = windows.flatMap((w) => [w.lengthDiffBefore, w.lengthDiffAfter]);
  assert.ok(Number(lengths.yMin) <= Math.min(...diffs) && Number(lengths.yMax) >= Math.max(...diffs), `length axis ${lengths.yMin}..${lengths.yMax} for ${diffs}`);

  // Consumer lag of the sample and score stages, from their own events.
  const lag = await panel('chart-lag');
  assert.ok(Number(lag.points) >= 16, `lag points: ${lag.points} (4 sampled + 4 scored groups per round)`);
  assert.deepEqual(lag.series!.split(',').sort(), ['sample', 'score']);
  assert.deepEqual(JSON.parse(lag.latest!), { sample: 0, score: 0 }, 'each stage ends with its input consumed');

  // Reward margins per training step, on the same x as the loss.
  assert.equal(await points('chart-margin'), 50);
  const [margin, loss] = [await panel('chart-margin'), await panel('chart-loss')];
  assert.deepEqual([margin.xMin, margin.xMax], [loss.xMin, loss.xMax]);
  assert.equal(margin.xMax, '50');
  const versions = await page.$$eval('#checkpoints tbody tr', (rows) => rows.map((r) => (r as HTMLTableRowElement).cells[1].textContent));
  assert.ok(versions.includes('2') && versions.includes('1'), `checkpoint timeline: ${versions}`);
  await mkdir('test-artifacts', { recursive: true });
  await page.screenshot({ path: 'test-artifacts/monitor-run.png', fullPage: true });
  assert.deepEqual(errors, []);
  const exit = await run.exited;
  assert.equal(exit.code, 0, run.stderr);
});
