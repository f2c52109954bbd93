import test from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { VerifyReport } from '../../src/archive/verify.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { openBus } from '../../topics/open-bus.ts';
import { topicName } from '../../topics/registry.ts';
import { assertRejectedV1NeverUsed, makeRunFixture, RANKING_GATE_ARGS, runCli } from './run-helpers.ts';

/**
 * The health gate end to end on the embedded bus (tiny random models, real engines, real child
 * processes): a gate whose ranking-consistency threshold v1 fails (this seed's v1 reverses the
 * probe rankings: τ = −1) must keep round 2 on v0 — samples, scores and training — with the
 * configured smaller learning rate; replay --verify re-derives the gate's decisions.
 */

const fixture = makeRunFixture();
const LR = 1e-3;

test.after(() => rmSync(fixture.dir, { recursive: true, force: true }));

test('dice run with a health gate: a rejected version never reaches a sampler, and replay --verify re-derives the decisions', async () => {
  const out = join(fixture.dir, 'gated');
  const r = await runCli([...fixture.args, ...RANKING_GATE_ARGS, '--out', out, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
  try {
    const v1 = await assertRejectedV1NeverUsed(bus, 'run', r.stdout);
    assert.equal(v1.heldOutPairs, 6);
    assert.equal(v1.probeGroups > 0, true);

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
