import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { healthTopic } from '../../topics/health.ts';
import { openBus } from '../../topics/open-bus.ts';
import { CliProcess, makeRunFixture, readCheckpoints, readLineage, runCli, serveArgs, TINY_SERVE_RECIPE } from './run-helpers.ts';

/**
 * dice serve with a health gate that rejects every version (a KL bound no estimate meets): the
 * samplers and scorers never leave v0, each rejected round moves on to fresh prompts, and the
 * trainer keeps training from v0 (real child process, embedded bus, tiny random models).
 */
test('dice serve with a health gate: rejected versions never reach a sampler or a scorer', async () => {
  const fixture = makeRunFixture();
  const { dir } = fixture;
  const bus = `embedded:${join(dir, 'serve-bus.db')}`;
  const serve = new CliProcess([
    ...serveArgs(fixture, bus),
    ...TINY_SERVE_RECIPE,
    '--set', 'health.heldOutPairs=4', '--set', 'health.probePrompts=2', '--set', 'health.probeSamples=2',
    '--set', 'gate.mode=thresholds', '--set', 'gate.maxKl=-1e9',
  ]);
  try {
    await serve.waitFor(/"msg":"serving"/);
    const produced = await runCli(['produce', '--topic', 'prompts', '--file', join(dir, 'prompts.jsonl'), '--bus', bus]);
    assert.equal(produced.code, 0, produced.stderr);
    await serve.waitFor(/"msg":"version rejected by the health gate".*"version":2/, 400_000);
    const exit = await serve.stop('SIGTERM');
    assert.equal(exit.code, 0, serve.stderr);
  } finally {
    await serve.stop('SIGKILL');
  }
  const b = await openBus(bus);
  try {
    const health = await readWholeTopic(b, 'health', healthTopic);
    assert.deepEqual(health.map((h) => [h.version, h.parentVersion, h.promoted]), [[1, 0, false], [2, 0, false]]);
    assert.match(health[0].reasons[0], /KL\(π_t ‖ π_t−1\) in nats .* > -1000000000/);
    const cps = await readCheckpoints(b, undefined);
    const last = (v: number) => cps.filter((c) => c.version === v).at(-1)!;
    assert.deepEqual([last(1).gate?.promoted, last(2).gate?.promoted], [false, false]);
    assert.deepEqual([last(2).parentVersion, last(2).referenceVersion], [0, 0]);
    const { scored, samples } = await readLineage(b, undefined);
    for (const g of samples) assert.equal(g.policy, 0, `a sampler used v${g.policy}`);
    for (const g of scored) assert.deepEqual([g.policy, g.reference], [0, -1]);
    // round 2 ran on 4 fresh prompts (with the same policy)
    assert.equal(scored.filter((g) => g.round === 2).length, 4);
    assert.equal(new Set(scored.filter((g) => g.round <= 2).map((g) => g.promptId)).size, 8);
  } finally {
    await b.close();
  }
});
