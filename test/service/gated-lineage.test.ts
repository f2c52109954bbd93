import test from 'node:test';
import assert from 'node:assert/strict';
import { parseRunConfig } from '../../src/config/schema.ts';
import { gatedRoundConfig, isUsable, lastPromoted, rejectedVersions, roundFrom, roundVersions } from '../../src/service/lineage.ts';

test('gated lineage: without rejections, the paper’s versions', () => {
  assert.deepEqual(roundVersions(1, 'dice', new Set()), roundVersions(1, 'dice'));
  assert.deepEqual(roundVersions(3, 'dice'), { round: 3, policy: 2, scoringReference: 1, trainingReference: 2, produces: 3 });
});

test('gated lineage: a round after rejected versions starts from the last promoted one, scored against its parent', () => {
  const rejected = new Set([2, 3]);
  assert.equal(lastPromoted(4, rejected), 1);
  // v1 was trained from v0: round 4 samples with v1, scores against v0, trains from v1, produces v4
  assert.deepEqual(roundVersions(4, 'dice', rejected), { round: 4, policy: 1, scoringReference: 0, trainingReference: 1, produces: 4 });
  // v4 (from v1) promoted: round 5 scores v4 against v1, skipping the rejected v2, v3
  assert.deepEqual(roundVersions(5, 'dice', rejected), { round: 5, policy: 4, scoringReference: 1, trainingReference: 4, produces: 5 });
  assert.deepEqual(roundVersions(2, 'dice', new Set([1])), { round: 2, policy: 0, scoringReference: -1, trainingReference: 0, produces: 2 });
  assert.equal(roundVersions(3, 'offline-dpo', new Set([2])).trainingReference, -1);
  assert.equal(roundFrom(1, rejected), 4);
  assert.equal(roundFrom(0, new Set()), 1);
});

test('gated lineage: each rejection since the last promoted version scales the lr; γ set by onReject', () => {
  const config = parseRunConfig({ train: { lr: 1e-4 }, replay: { gamma: 0.5 }, gate: { onReject: { lrScale: 0.5, gamma: 0.9 } } });
  assert.equal(gatedRoundConfig(config, roundVersions(3, 'dice')), config);
  const after2 = gatedRoundConfig(config, roundVersions(4, 'dice', new Set([2, 3])));
  assert.equal(after2.train.lr, 1e-4 * 0.25);
  assert.equal(after2.replay.gamma, 0.9);
  const keepGamma = gatedRoundConfig(parseRunConfig({ gate: { onReject: { lrScale: 0.5 } } }), roundVersions(2, 'dice', new Set([1])));
  assert.equal(keepGamma.replay.gamma, 0.5);
});

test('gated lineage: usable checkpoints and rejected versions from gate decisions', () => {
  assert.equal(isUsable({ version: 2 }, false), true);
  assert.equal(isUsable({ version: 2 }, true), false, 'not decided yet');
  assert.equal(isUsable({ version: 2, gate: { promoted: false, reasons: ['x'] } }, true), false);
  assert.equal(isUsable({ version: 2, gate: { promoted: true, reasons: [] } }, true), true);
  assert.equal(isUsable({ version: 0 }, true), true);
  assert.deepEqual([...rejectedVersions([{ version: 1, promoted: true }, { version: 2, promoted: false }, { version: 3, gate: { promoted: false } }, { version: 4 }])], [2, 3]);
});
