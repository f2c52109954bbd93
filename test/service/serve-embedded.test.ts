import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { openBus } from '../../topics/open-bus.ts';
import { CliProcess, makeRunFixture, readCheckpoints, readLineage, runCli, serveArgs, TINY_SERVE_RECIPE } from './run-helpers.ts';

test('dice serve picks up prompts produced after it started, completes rounds on them, and drains on SIGTERM', async () => {
  const fixture = makeRunFixture();
  const { dir } = fixture;
  const bus = `embedded:${join(dir, 'serve-bus.db')}`;
  const serve = new CliProcess([
    ...serveArgs(fixture, bus),
    ...TINY_SERVE_RECIPE,
  ]);
  try {
    await serve.waitFor(/"msg":"serving"/);
    // nothing to do yet: no prompts
    const produced = await runCli(['produce', '--topic', 'prompts', '--file', join(dir, 'prompts.jsonl'), '--bus', bus]);
    assert.equal(produced.code, 0, produced.stderr);
    await serve.waitFor(/"msg":"checkpoint".*"version":"v2"/, 300_000); // two rounds of a tiny model: ~1 min alone, ~2 at load 20
    const exit = await serve.stop('SIGTERM');
    assert.equal(exit.code, 0, serve.stderr);
    assert.match(serve.stderr, /"msg":"sampler stopped"/);
  } finally {
    await serve.stop('SIGKILL');
  }
  const b = await openBus(bus);
  try {
    const cps = await readCheckpoints(b, undefined);
    assert.deepEqual(cps.map((c) => [c.version, c.parentVersion, c.referenceVersion]), [[-1, null, null], [0, null, -1], [1, 0, 0], [2, 1, 1]]);
    const { scored } = await readLineage(b, undefined);
    // round 1 on v0 with reference π_ref(0); round 2 on v1 with reference v0; 4 fresh prompts each
    assert.deepEqual(scored.filter((g) => g.round === 1).map((g) => [g.policy, g.reference]), Array(4).fill([0, -1]));
    assert.deepEqual(scored.filter((g) => g.round === 2).map((g) => [g.policy, g.reference]), Array(4).fill([1, 0]));
    assert.equal(new Set(scored.map((g) => g.promptId)).size, 8);
  } finally {
    await b.close();
  }
});
