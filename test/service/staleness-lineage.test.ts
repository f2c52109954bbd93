import test from 'node:test';
import assert from 'node:assert/strict';
import { parseRunConfig } from '../../src/config/schema.ts';
import { samplingVersions, versionsBehind } from '../../src/service/lineage.ts';
import { scoreStage } from '../../src/stages/score.ts';
import { tooStale } from '../../src/stages/stage.ts';

test('staleness counts the versions a sampler could have used since, not version numbers', () => {
  assert.equal(versionsBehind(2, 2, new Set()), 0);
  assert.equal(versionsBehind(1, 3, new Set()), 2);
  // v2 and v3 rejected: a group of v1 is one version behind v4, none behind v1
  assert.equal(versionsBehind(1, 4, new Set([2, 3])), 1);
  assert.equal(versionsBehind(1, 1, new Set([2, 3])), 0);
  assert.equal(versionsBehind(-1, 0, new Set()), 1);
});

test('a stale group is sampled and scored as its own version’s round, tagged with the round it trains in', () => {
  // sampled by v1 for round 3 (which trains from v2): the reward is (v1, π_ref = v0)
  assert.deepEqual(samplingVersions(3, 1, 'dice', new Set()), { round: 3, policy: 1, scoringReference: 0, trainingReference: 1, produces: 2 });
  assert.deepEqual(samplingVersions(1, 0, 'dice', new Set()), { round: 1, policy: 0, scoringReference: -1, trainingReference: 0, produces: 1 });
});

test('serve.maxStaleness: 0 keeps strictly on-policy (the default), s drops only groups more than s versions behind', () => {
  const strict = parseRunConfig({});
  assert.equal(strict.serve.maxStaleness, 0);
  const one = parseRunConfig({ serve: { maxStaleness: 1 } });
  assert.deepEqual([0, 1, 2].map((b) => tooStale(strict, b)), [false, true, true]);
  assert.deepEqual([0, 1, 2].map((b) => tooStale(one, b)), [false, false, true]);
  assert.equal(tooStale(parseRunConfig({ strictOnPolicy: false }), 5), false);
  const group = { policyVersion: 1 } as Parameters<NonNullable<typeof scoreStage.isStale>>[0];
  assert.equal(scoreStage.isStale!(group, (v) => versionsBehind(v, 2, new Set()), one), false);
  assert.equal(scoreStage.isStale!(group, (v) => versionsBehind(v, 3, new Set()), one), true);
  assert.throws(() => parseRunConfig({ serve: { maxStaleness: -1 } }), /serve\.maxStaleness/);
});
