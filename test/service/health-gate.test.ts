import test from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { VerifyReport } from '../../src/archive/verify.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import type { Checkpoint } from '../../topics/checkpoints.ts';
import { healthTopic } from '../../topics/health.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { openBus } from '../../topics/open-bus.ts';
import { topicName } from '../../topics/registry.ts';
import { makeRunFixture, readCheckpoints, readLineage, runCli } from './run-helpers.ts';

/**
 * The health gate end to end on the embedded bus (tiny random models, real engines, real child
 * processes): a gate whose ranking-consistency threshold v1 fails (this seed's v1 reverses the
 * probe rankings: τ = −1) must keep round 2 on v0 — samples, scores and training — with the
 * configured smaller learning rate; replay --verify re-derives the gate's decisions.
 */

const fixture = makeRunFixture();
const LR = 1e-3;
const gateArgs = [
  '--set', 'health.heldOutPairs=6', '--set', 'health.probePrompts=2', '--set', 'health.probeSamples=2',
  '--set', 'gate.mode=thresholds', '--set', 'gate.minRankingTau=0', '--set', 'gate.onReject.lrScale=0.25',
];

test.after(() => rmSync(fixture.dir, { recursive: true, force: true }));

test('dice run with a health gate: a rejected version never reaches a sampler, and replay --verify re-derives the decisions', async () => {
  const out = join(fixture.dir, 'gated');
  const r = await runCli([...fixture.args, ...gateArgs, '--out', out, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    const health = await readWholeTopic(bus, topicName('run', 'health'), healthTopic);
    const v1 = health.find((h) => h.version === 1)!;
    assert.equal(v1.promoted, false, JSON.stringify(v1));

    // runDice's result: the usable versions (v0 and the promoted ones) apart from the rejected ones, never mixed
    const result = JSON.parse(r.stdout) as { checkpoints: Checkpoint[]; rejected: Checkpoint[] };
    const promoted = health.filter((h) => h.promoted).map((h) => h.version);
    assert.deepEqual(result.checkpoints.map((c) => c.version), [0, ...promoted]);
    assert.deepEqual(result.rejected.map((c) => [c.version, c.gate]), health.filter((h) => !h.promoted).map((h) => [h.version, { promoted: false, reasons: h.reasons }]));
    assert.ok(result.checkpoints.every((c) => c.version === 0 || c.gate?.promoted === true));
    assert.match(v1.reasons.join('\n'), /ranking consistency \(Kendall τ\) -?[0-9.]+ < 0/);
    assert.equal(v1.heldOutPairs, 6);
    assert.equal(v1.probeGroups > 0, true);

    // v1 is on the checkpoints topic as rejected, with its reasons (the last record of v1)
    const checkpoints = await readCheckpoints(bus, 'run');
    const v1Records = checkpoints.filter((c) => c.version === 1);
    assert.equal(v1Records.length, 2, 'the train stage publishes v1, the health stage publishes it again with its decision');
    assert.deepEqual(v1Records.at(-1)!.gate, { promoted: false, reasons: v1.reasons });
    // round 2 trains from v0 again (its reference too), not from the rejected v1
    const v2 = checkpoints.filter((c) => c.version === 2).at(-1)!;
    assert.deepEqual([v2.parentVersion, v2.referenceVersion], [0, 0]);
    assert.equal(health.find((h) => h.version === 2)!.parentVersion, 0);

    // no sampler and no scorer ever used v1
    const { scored, samples } = await readLineage(bus, 'run');
    assert.equal(samples.filter((g) => g.round === 2).length, 4);
    for (const g of samples) assert.equal(g.policy, 0, `round ${g.round} sampled with v${g.policy}`);
    for (const g of scored) assert.deepEqual([g.policy, g.reference], [0, -1]);
    // fresh prompts in round 2 all the same
    assert.equal(new Set(scored.map((g) => g.promptId)).size, 8);

    // the configured smaller learning rate after a rejection; the monitor's events
    const metrics = await readWholeTopic(bus, topicName('run', 'metrics'), metricsTopic);
    // (the peak: warm-up starts from 0)
    const peakLr = (round: number) => Math.max(...metrics.filter((m) => m.stage === 'train' && m.type === 'step' && m.round === round).map((m) => Number(m.lr)));
    assert.equal(peakLr(1), LR);
    assert.equal(peakLr(2), LR * 0.25);
    const failed = metrics.filter((m) => m.stage === 'health' && m.type === 'gate-failed');
    assert.ok(failed.some((m) => m.version === 1 && m.parentVersion === 0));
    assert.equal(metrics.filter((m) => m.stage === 'health' && m.type === 'version').length, 2);
  } finally {
    await bus.close();
  }

  // replay --verify re-derives the health stage (and so the gate's decisions) from the recorded v_t
  const archive = join(fixture.dir, 'archive');
  const a = await runCli(['archive', '--bus', `embedded:${join(out, 'bus.db')}`, '--namespace', 'run', '--out', archive]);
  assert.equal(a.code, 0, a.stderr);
  const v = await runCli(['replay', '--from', archive, '--verify', '--verify-stages', 'health', '--json', '--out', join(fixture.dir, 'verify')]);
  assert.equal(v.code, 0, v.stderr);
  const report = JSON.parse(v.stdout) as VerifyReport;
  assert.deepEqual(report.stages.map((s) => [s.round, s.stage, s.records, s.identical]), [[1, 'health', 1, true], [2, 'health', 1, true]]);
});
