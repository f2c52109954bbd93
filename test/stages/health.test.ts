import test from 'node:test';
import assert from 'node:assert/strict';
import type { Checkpoint } from '../../topics/checkpoints.ts';
import { healthTopic } from '../../topics/health.ts';
import type { OfflinePair } from '../../topics/offline.ts';
import { parseRunConfig, type RunConfig } from '../../src/config/schema.ts';
import type { ScoreRequest } from '../../src/engine/scorer.ts';
import type { SampleRequest } from '../../src/engine/sampler.ts';
import { healthStage, type HealthDeps } from '../../src/stages/health.ts';
import type { RoundContext } from '../../src/stages/stage.ts';
import { roundVersions } from '../../src/service/lineage.ts';

/**
 * Constructed models: a model (by its directory) gives held-out answers and probe responses fixed
 * log-probs, so every health metric has a value worked out by hand.
 */
type Model = { chosen: number; rejected: number; probe: (k: number) => number };

const offline: OfflinePair[] = Array.from({ length: 12 }, (_, i) => ({
  pairId: `o${i}`, prompt: `question ${i}`, chosen: `good ${i}`, rejected: `bad ${i}`, chosenMessages: null, rejectedMessages: null, source: null,
}));

const K = 4;
const ref0: Model = { chosen: -10, rejected: -10, probe: (k) => -10 - k };
const v0: Model = { chosen: -9, rejected: -11, probe: (k) => -10 - 2 * k }; // previous reward −0.1·k: prefers low k

function deps(models: Record<string, Model>, sampledLength: (dir: string, k: number) => number = () => 5): HealthDeps {
  const scorer = (dir: string) => ({
    score: async (items: ScoreRequest[]) =>
      items.map((it) => {
        const m = models[dir];
        const logProb = it.response !== undefined ? (it.response.startsWith('good') ? m.chosen : m.rejected) : m.probe(it.responseTokenIds![0]);
        return { logProb, tokenLogProbs: [], promptTokenIds: [1], responseTokenIds: it.responseTokenIds ?? [2] };
      }),
    close: async () => {},
  });
  const sampler = (dir: string) => ({
    generate: async (requests: SampleRequest[]) =>
      requests.map((r) => ({
        promptId: r.promptId,
        promptTokenIds: [1],
        samples: Array.from({ length: r.k }, (_, k) => ({ k, seed: r.seed + k, tokenIds: [k], text: 'x'.repeat(sampledLength(dir, k)), finishReason: 'eos' as const, logProb: models[dir].probe(k) })),
      })),
    close: async () => {},
  });
  return { offline, openScorer: async (dir) => scorer(dir), openSampler: async (dir) => sampler(dir) };
}

function ctxOf(config: RunConfig, round = 1): RoundContext {
  return { config, versions: roundVersions(round, 'dice'), dirOf: (v) => `v${v}`, runId: 'run', roundPrompts: new Set(), roundPromptOrder: [] };
}

const checkpoint: Checkpoint = { version: 1, parentVersion: 0, referenceVersion: 0, round: 1, location: '/x/v1', sha256: 'a'.repeat(64), metrics: {}, createdAt: 5 };

const gated = (extra: Record<string, unknown> = {}) =>
  parseRunConfig({
    sampling: { chatTemplate: false },
    health: { heldOutPairs: 8, probePrompts: 3, probeSamples: K },
    gate: { mode: 'thresholds', minRoundAccuracy: 0.5, maxCumulativeAccuracyDrop: 0.1, ...extra },
  });

async function healthOf(v1: Model, config = gated(), lengths?: (dir: string, k: number) => number) {
  const ctx = ctxOf(config);
  const result = await healthStage.derive([checkpoint], deps({ 'v-1': ref0, v0, v1 }, lengths), ctx);
  // the record is valid on its topic
  assert.deepEqual(healthTopic.decode(healthTopic.encode(result.record)), result.record);
  return result;
}

test('health: a version identical to its parent is promoted (round reward 0: ties, accuracy ½; no drop)', async () => {
  const { record, checkpoint: gatedCheckpoint } = await healthOf(v0);
  assert.equal(record.roundAccuracy, 0.5);
  assert.equal(record.cumulativeAccuracy, 1);
  assert.equal(record.previousCumulativeAccuracy, 1);
  assert.equal(record.kl, 0);
  assert.equal(record.rankingTau, null); // the new reward is 0 for every probe response: no ranking
  assert.equal(record.lengthChange, 0);
  assert.equal(record.promoted, true);
  assert.deepEqual(gatedCheckpoint.gate, { promoted: true, reasons: [] });
  assert.equal(record.heldOutPairs, 8);
});

test('health: a version that flips the held-out preferences is rejected, with its reasons', async () => {
  const flipped: Model = { chosen: -12, rejected: -8, probe: v0.probe };
  const { record, checkpoint: gatedCheckpoint } = await healthOf(flipped);
  assert.equal(record.roundAccuracy, 0);
  assert.equal(record.cumulativeAccuracy, 0);
  assert.equal(record.promoted, false);
  assert.deepEqual(record.reasons, ['held-out accuracy of the round reward 0 < 0.5', 'drop of the cumulative held-out accuracy 1 > 0.1']);
  assert.equal(gatedCheckpoint.gate?.promoted, false);
  assert.equal(gatedCheckpoint.sha256, checkpoint.sha256);
  const events = healthStage.project({ record, checkpoint: gatedCheckpoint }, ctxOf(gated()));
  assert.deepEqual(events.map((e) => e.name), ['health/version', 'health/gate-failed']);
});

test('health: the same version under always-promote is promoted with the same metrics', async () => {
  const flipped: Model = { chosen: -12, rejected: -8, probe: v0.probe };
  const { record } = await healthOf(flipped, parseRunConfig({ sampling: { chatTemplate: false }, health: { heldOutPairs: 8, probePrompts: 3, probeSamples: K } }));
  assert.equal(record.cumulativeAccuracy, 0);
  assert.equal(record.promoted, true);
});

test('health: ranking consistency τ = 1 when the new reward keeps the previous order, −1 when it reverses it; KL from the probes', async () => {
  // previous reward r0(k) = 0.1·(log π0 − log πref0) = −0.1·k
  const keeps: Model = { chosen: -8, rejected: -12, probe: (k) => v0.probe(k) - 3 * k }; // new reward −0.3·k
  const reverses: Model = { chosen: -8, rejected: -12, probe: (k) => v0.probe(k) + k }; // new reward +0.1·k
  const a = await healthOf(keeps);
  assert.equal(a.record.rankingTau, 1);
  assert.equal(a.record.probeGroups, 3);
  // KL = mean over k of (log π1 − log π0) = −3·mean(0..3) = −4.5 (the constructed "model" is no distribution; the estimator's arithmetic is what is checked)
  assert.equal(a.record.kl, -4.5);
  assert.equal(a.record.promoted, true);
  const b = await healthOf(reverses, gated({ minRankingTau: 0 }));
  assert.equal(b.record.rankingTau, -1);
  assert.equal(b.record.promoted, false);
  assert.match(b.record.reasons.join('\n'), /ranking consistency \(Kendall τ\) -1 < 0/);
});

test('health: probe length growth against the parent’s responses', async () => {
  const { record } = await healthOf(v0, gated({ maxLengthGrowth: 0.5 }), (dir) => (dir === 'v1' ? 10 : 5));
  assert.equal(record.previousProbeLength, 5);
  assert.equal(record.probeLength, 10);
  assert.equal(record.lengthChange, 1);
  assert.equal(record.promoted, false);
  assert.deepEqual(record.reasons, ['relative growth of the probe length 1 > 0.5']);
});

test('health: re-deriving gives the same record (what replay --verify compares)', async () => {
  const flipped: Model = { chosen: -12, rejected: -8, probe: v0.probe };
  const a = await healthOf(flipped);
  const b = await healthOf(flipped);
  assert.deepEqual(a.record, b.record);
});
