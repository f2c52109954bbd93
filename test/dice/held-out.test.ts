import test from 'node:test';
import assert from 'node:assert/strict';
import { splitHeldOut } from '../../src/dice/held-out.ts';
import { ConfigError, healthEnabled, parseRunConfig } from '../../src/config/schema.ts';

const pairs = Array.from({ length: 20 }, (_, i) => ({ pairId: `p${i}` }));

test('held-out slice: disjoint from the replayable rest, independent of file order, seeded', () => {
  const a = splitHeldOut(pairs, 5, 7);
  assert.equal(a.heldOut.length, 5);
  assert.equal(a.replayable.length, 15);
  const held = new Set(a.heldOut.map((p) => p.pairId));
  assert.ok(a.replayable.every((p) => !held.has(p.pairId)));
  const reversed = splitHeldOut([...pairs].reverse(), 5, 7);
  assert.deepEqual(reversed.heldOut.map((p) => p.pairId), a.heldOut.map((p) => p.pairId));
  // the replayable rest keeps its original order
  assert.deepEqual(a.replayable.map((p) => p.pairId), pairs.filter((p) => !held.has(p.pairId)).map((p) => p.pairId));
  const otherSeed = splitHeldOut(pairs, 5, 8);
  assert.notDeepEqual(otherSeed.heldOut.map((p) => p.pairId).sort(), [...held].sort());
});

test('held-out slice: 0 leaves D_offline as it is; all of it is refused', () => {
  assert.equal(splitHeldOut(pairs, 0, 1).replayable, pairs);
  assert.throws(() => splitHeldOut(pairs, 20, 1), /heldOutPairs is 20 but D_offline has 20 pairs/);
});

test('config: health and gate default to the paper (no health stage, always promote)', () => {
  const c = parseRunConfig({});
  assert.equal(c.health.heldOutPairs, 0);
  assert.equal(c.gate.mode, 'always-promote');
  assert.equal(c.gate.onReject.lrScale, 1);
  assert.equal(c.gate.onReject.gamma, undefined);
  assert.equal(healthEnabled(c), false);
  assert.equal(healthEnabled(parseRunConfig({ health: { heldOutPairs: 8 } })), true);
});

test('config: a gate with nothing to measure, or more probes than held-out pairs, is refused by name', () => {
  assert.throws(() => parseRunConfig({ gate: { mode: 'thresholds', minRoundAccuracy: 0.6 } }), (e: Error) => e instanceof ConfigError && /gate\.mode: thresholds/.test(e.message));
  assert.throws(() => parseRunConfig({ health: { heldOutPairs: 2, probePrompts: 3 } }), /health\.probePrompts: 3 probe prompts/);
  assert.throws(() => parseRunConfig({ gate: { onReject: { lrScale: 2 } } }), /gate\.onReject\.lrScale/);
  assert.throws(() => parseRunConfig({ health: { heldOutPairs: 4 }, gate: { mode: 'thresholds', maxKl: 5 } }), /gate\.maxKl: it is measured on probe prompts, but health\.probePrompts is 0/);
});
