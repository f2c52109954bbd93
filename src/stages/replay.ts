import { from, lastValueFrom, toArray } from 'rxjs';
import { batchesTopic, batchKey, type TrainingBatch } from '../../topics/batches.ts';
import type { OfflinePair } from '../../topics/offline.ts';
import { pairsTopic, type PreferencePair } from '../../topics/pairs.ts';
import type { ScorerPort } from '../../operators/ports.ts';
import { replay } from '../../operators/replay.ts';
import type { RunConfig } from '../config/schema.ts';
import type { ReplayMix } from '../dice/replay.ts';
import { Scorer } from '../engine/scorer.ts';
import type { RoundVersions } from '../service/lineage.ts';
import { engineOptions } from '../service/round-config.ts';
import { byKey, stageEvent, usesChatTemplate, type RoundStage } from './stage.ts';

export interface ReplayDeps {
  /** D_offline. */
  offline: readonly OfflinePair[];
  /** Opens the training reference's scorer (default: the onnxruntime Scorer). */
  openReference?: (modelDir: string, config: RunConfig) => Promise<ScorerPort & { close(): Promise<void> }>;
}

export interface ReplayResult {
  batches: TrainingBatch[];
  mix: Omit<ReplayMix<PreferencePair, OfflinePair>, 'pairs'> | null;
}

/**
 * Offline pairs need reference log-probs under the training reference; generated pairs carry the
 * sampler's, which are the reference's only when it is the sampling policy (DICE), not when the
 * reference stays π_ref(0) (offline DPO).
 */
export function replayNeedsReference(config: RunConfig, versions: RoundVersions): boolean {
  return config.replay.gamma > 0 || versions.trainingReference !== versions.policy;
}

/**
 * Alg. 1 line 5 — pairs → batches: D_t = (1 − γ)·D(α*) + γ·D_offline, exactly ⌊γN⌋ offline pairs
 * with prompts disjoint from the round's (src/dice/replay.ts:mixReplay), reference log-probs for
 * them, shuffled and cut into S batches of B (cutBatches), seeded by (run seed, round). Generated
 * pairs in pairId order.
 */
export const replayStage: RoundStage<PreferencePair, TrainingBatch, ReplayDeps, ReplayResult, 'replay/mix'> = {
  kind: 'whole-round',
  name: 'replay',
  input: { topic: 'pairs', contract: pairsTopic, key: (p) => p.promptId },
  output: { topic: 'batches', contract: batchesTopic, key: batchKey },
  emits: ['replay/mix'],
  inRound: (p, ctx) => p.round === ctx.versions.round,
  order: byKey((p) => p.pairId),
  async derive(generated, deps, ctx) {
    const { config, versions } = ctx;
    const open = deps.openReference ?? ((modelDir, c) => Scorer.open({ modelDir, ...engineOptions(c) }));
    const reference = replayNeedsReference(config, versions) ? await open(ctx.dirOf(versions.trainingReference), config) : null;
    let mix: ReplayResult['mix'] = null;
    try {
      const batches = await lastValueFrom(
        from(generated).pipe(
          replay({
            round: versions.round,
            runId: ctx.runId,
            runSeed: config.seed,
            gamma: config.replay.gamma,
            offline: deps.offline,
            reference: reference ?? { score: async () => [] },
            referenceIsSamplingPolicy: versions.trainingReference === versions.policy,
            chat: usesChatTemplate(config, ctx.dirOf(versions.policy)),
            steps: config.train.steps,
            batchSize: config.train.batch,
            onMix: ({ pairs: _pairs, ...summary }) => (mix = summary),
          }),
          toArray(),
        ),
      );
      return { batches, mix };
    } finally {
      await reference?.close();
    }
  },
  logLines: (r) => [{ msg: 'replay mix', fields: { generated: r.mix?.generatedCount ?? 0, offline: r.mix?.offlineCount ?? 0, batches: r.batches.length } }],
  outputs: (r) => r.batches,
  project: (r, ctx) =>
    r.mix
      ? [stageEvent('replay/mix', { size: r.mix.size, offline: r.mix.offlineCount, generated: r.mix.generatedCount, offlineExcluded: r.mix.offlineExcluded, gamma: ctx.config.replay.gamma })]
      : [],
};
