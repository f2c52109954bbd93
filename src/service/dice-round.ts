import type { Checkpoint } from '../../topics/checkpoints.ts';
import type { OfflinePair } from '../../topics/offline.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { AlphaWindow } from '../../operators/alpha.ts';
import type { RunConfig } from '../config/schema.ts';
import { alphaStage, replayStage, sampleStage, scoreStage, trainStage } from '../stages/index.ts';
import type { ReplayDeps, ReplayResult } from '../stages/replay.ts';
import { stageEvent, type RecordStage, type RoundContext, type RoundStage, type StageEvent } from '../stages/stage.ts';
import type { TrainDeps } from '../stages/train.ts';
import { roundVersions, type RoundVersions } from './lineage.ts';

/**
 * How a round's stages are run: where a stage's inputs come from and where its outputs go.
 *   batch   (`dice run`)             the stage's input topic to its end; outputs + input commits in one unit
 *   service (`dice serve` trainer)   the previous stage's outputs in memory; one unit for the whole round
 *   verify  (`dice replay --verify`) the recorded inputs; outputs compared with the recorded ones
 */
export interface RoundExecutor {
  /** A per-record stage (sample, score) over the round's inputs. */
  records<In, Out, E extends { close(): Promise<void> }>(stage: RecordStage<In, Out, E, any>, ctx: RoundContext): Promise<void>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** A whole-round stage; null when the executor did not derive it (done before a restart, or not asked for). */
  round<In, Out, D, R>(stage: RoundStage<In, Out, D, R, any>, deps: D, ctx: RoundContext): Promise<R | null>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface DiceRoundInputs {
  round: number;
  config: RunConfig;
  dirOf: (version: number) => string;
  runId: string;
  /** The round's fresh prompts x ~ X in their fixed order (none for the offline-DPO baselines, which only replay). */
  roundPrompts: readonly PromptRecord[];
  offline: readonly OfflinePair[];
  replay?: Omit<ReplayDeps, 'offline'>;
  train: TrainDeps;
  emit?: (event: StageEvent) => void;
}

export interface RoundOutcome {
  versions: RoundVersions;
  windows: AlphaWindow[] | null;
  replay: ReplayResult | null;
  checkpoint: Checkpoint | null;
}

/** The events diceRound itself emits (the stages emit the rest). */
export const ROUND_EMITS = ['round/start'] as const;

/**
 * Algorithm 1, one round t (paper §4.3), over the stage definitions of src/stages.
 */
export async function diceRound(inputs: DiceRoundInputs, x: RoundExecutor): Promise<RoundOutcome> {
  const { round, config } = inputs;
  // Who plays which part: sample with π_θ(t−1), score against π_ref(t−1), train from π_θ(t−1).
  const versions = roundVersions(round, config.method);
  const roundPrompts = new Set(inputs.roundPrompts.map((p) => p.promptId));
  const ctx: RoundContext = { config, versions, dirOf: inputs.dirOf, runId: inputs.runId, roundPrompts, roundPromptOrder: inputs.roundPrompts, emit: inputs.emit };
  inputs.emit?.(
    stageEvent('round/start', { policyVersion: versions.policy, referenceVersion: versions.scoringReference, trainingReferenceVersion: versions.trainingReference, prompts: roundPrompts.size }),
  );

  let windows: AlphaWindow[] | null = [];
  if (roundPrompts.size > 0) {
    // Line 3: x ~ X, y_1:K ~ π_θ(t−1)(·|x).
    await x.records(sampleStage, ctx);
    // Line 4: r(x, y) = β log π_θ(t−1)(y|x) / π_ref(t−1)(y|x)  (Eq. 4).
    await x.records(scoreStage, ctx);
    // Line 4: α* = argmin_α |E[|y_w| − |y_l|]| (Eq. 6); D(α*) = best/worst y under r − α*|y| (Eq. 5).
    windows = await x.round(alphaStage, null, ctx);
  }
  // Line 5: D_t = (1 − γ)·D(α*) + γ·D_offline.
  const mixed = await x.round(replayStage, { ...inputs.replay, offline: inputs.offline }, ctx);
  if (mixed && mixed.batches.length === 0) throw noPairsError(round, config, windows ?? []);
  // Line 6: θ(t) ← argmin_θ DPO loss on D_t (Eq. 3), from π_θ(t−1) with reference π_θ(t−1).
  const checkpoint = await x.round(trainStage, inputs.train, ctx);
  // Line 7: π_ref(t) ← π_θ(t−1) — round t+1's roundVersions().scoringReference.
  return { versions, windows, replay: mixed, checkpoint };
}

function noPairsError(round: number, config: RunConfig, windows: AlphaWindow[]): Error {
  const f = windows.map((w) => w.filter);
  const sum = (g: (x: (typeof f)[number]) => number) => f.reduce((s, x) => s + g(x), 0);
  return new Error(
    `round ${round}: no training pairs (offline share ${config.replay.gamma}); ` +
      `the filters kept ${sum((x) => x.groupsKept)} of ${sum((x) => x.groupsIn)} groups ` +
      `(truncated responses dropped: ${sum((x) => x.dropped.truncated)}): raise --max-new-tokens, or set filters.dropTruncated=false`,
  );
}
