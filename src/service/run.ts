import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Bus } from '../../topics/bus.ts';
import type { Checkpoint } from '../../topics/checkpoints.ts';
import type { HealthRecord } from '../../topics/health.ts';
import { markersTopic, promptOrderMarker, promptOrdersOf } from '../../topics/markers.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { offlineTopic, type OfflinePair } from '../../topics/offline.ts';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import type { AlphaWindow } from '../../operators/alpha.ts';
import { versionLabel } from '../../operators/train.ts';
import { healthEnabled, type RunConfig } from '../config/schema.ts';
import { verifyCheckpoint } from '../model/checkpoint.ts';
import { Scorer } from '../engine/scorer.ts';
import { stageEvent } from '../stages/stage.ts';
import type { Logger } from '../util/log.ts';
import { Progress } from '../util/log.ts';
import { BatchExecutor } from './batch-executor.ts';
import { diceRound } from './dice-round.ts';
import { ingestFile, offlineDefaults, promptDefaults } from './ingest.ts';
import { isUsable, publishInitialLineage, REF0_VERSION, rejectedVersions, roundVersions, type RoundVersions } from './lineage.ts';
import type { MetricsEmitter } from './metrics.ts';
import { engineOptions } from './round-config.ts';
import { readWholeTopic } from './stage-runner.ts';

/**
 * `dice run`: paper Algorithm 1 for R rounds over a prompt file, as stages over the bus. Each stage
 * reads its input topic in its own consumer group and writes its outputs together with the commit
 * of its inputs, so a run killed at any point and started again with the same command continues
 * from the last committed work and ends with the same checkpoints as an uninterrupted run.
 *
 * Round t: sample (π_θ(t−1)) → score (reference π_ref(t−1)) → α* window + pairs → replay mix →
 * batches → S DPO steps from π_θ(t−1) with reference π_θ(t−1) → checkpoint v_t.
 */

export interface RunInputs {
  bus: Bus;
  /** Topic namespace of the run (several runs can share one bus). */
  namespace: string;
  config: RunConfig;
  /** π_θ(0), the DPO-tuned policy the run starts from. */
  policyDir: string;
  /** π_ref(0), its reference (e.g. the SFT model). */
  refDir: string;
  promptsFile: string;
  offlineFile?: string;
  /** New checkpoints go to outDir/v1, outDir/v2, … */
  outDir: string;
  log: Logger;
  metrics: MetricsEmitter;
  /** Test hook: called after each stage of a round (e.g. to kill the process mid-round). */
  afterStage?: (round: number, stage: string) => void | Promise<void>;
}

export interface RoundSummary {
  round: number;
  versions: RoundVersions;
  windows: Array<Omit<AlphaWindow, 'pairs'>>;
  generatedPairs: number;
  offlinePairs: number;
  /** v_t; with a health stage, with the gate's decision. */
  checkpoint: Checkpoint;
  /** v_t's health record (null: no health stage, or a resumed round). */
  health: HealthRecord | null;
  /** Wall seconds per stage, and the part of it spent in the engines (loading, sampling, scoring, training). */
  seconds: Record<string, number>;
  engineSeconds: Record<string, number>;
  resumed: boolean;
}

export interface RunResult {
  /** The versions samplers and scorers may use (src/service/lineage.ts:isUsable): v0 and the promoted (or ungated) v_t. */
  checkpoints: Checkpoint[];
  /** The versions the health gate rejected, each with its gate's reasons: trained and recorded, never used. */
  rejected: Checkpoint[];
  rounds: RoundSummary[];
}

export async function runDice(inputs: RunInputs): Promise<RunResult> {
  const { bus, namespace, config, log } = inputs;
  const T = (base: TopicBaseName) => topicName(namespace, base);
  await createPipelineTopics(bus, namespace);
  const outDir = resolve(inputs.outDir);

  const prompts = await ingestFile(bus, T('prompts'), T('dead-letter'), promptsTopic, inputs.promptsFile, promptDefaults);
  log.info('prompts on the bus', { topic: T('prompts'), prompts: prompts.values.length, produced: prompts.produced, deadLettered: prompts.deadLettered });
  let offline: OfflinePair[] = [];
  if (inputs.offlineFile) {
    const o = await ingestFile(bus, T('offline'), T('dead-letter'), offlineTopic, inputs.offlineFile, offlineDefaults);
    offline = o.values;
    log.info('offline pairs on the bus', { topic: T('offline'), pairs: offline.length, produced: o.produced, deadLettered: o.deadLettered });
  }
  if (config.replay.gamma > 0 && offline.length === 0) {
    throw new Error(`replay.gamma is ${config.replay.gamma} but no offline pairs were given: pass --offline FILE or set --gamma 0`);
  }

  const perRound = config.promptsPerRound || Math.ceil(prompts.values.length / config.rounds);
  if (config.replay.gamma < 1 && perRound * config.rounds > prompts.values.length) {
    throw new Error(
      `${config.rounds} rounds of ${perRound} prompts need ${perRound * config.rounds} prompts, but ${inputs.promptsFile} has ${prompts.values.length}`,
    );
  }

  const dirOf = (version: number) =>
    version === REF0_VERSION ? resolve(inputs.refDir) : version === 0 ? resolve(inputs.policyDir) : join(outDir, `v${version}`);
  await recordRunMetadata(inputs);
  const published = await publishInitialLineage(bus, T('checkpoints'), dirOf(0), dirOf(REF0_VERSION));
  const stagesDone = await readStagesDone(bus, namespace);
  const promptOrders = await readPromptOrders(bus, namespace);
  const rounds: RoundSummary[] = [];
  // versions the health gate rejected (a resumed run keeps starting from the last promoted one)
  const rejected = rejectedVersions(published.values());
  for (let round = 1; round <= config.rounds; round++) {
    const done = published.get(round);
    // with a health stage, a round is done once v_t carries the gate's decision
    if (done && (done.gate || !healthEnabled(config))) {
      const manifest = verifyCheckpoint(done.location);
      if (manifest.sha256 !== done.sha256) throw new Error(`${done.location}: weights hash ${manifest.sha256} differs from the published ${done.sha256}`);
      log.info('round already done', { round, version: round, sha256: done.sha256 });
      rounds.push({ round, versions: roundVersions(round, config.method, rejected), windows: [], generatedPairs: 0, offlinePairs: 0, checkpoint: done, health: null, seconds: {}, engineSeconds: {}, resumed: true });
      continue;
    }
    const roundPrompts = prompts.values.slice((round - 1) * perRound, round * perRound);
    // the order the sample stage cuts its engine batches from, for replay --verify (once per round)
    if (config.replay.gamma < 1 && !promptOrders.has(round)) {
      await bus.produce(T('markers'), [{ key: 'sample', value: markersTopic.encode(promptOrderMarker(round, roundPrompts.map((p) => p.promptId))) }]);
    }
    const stages = new Set(stagesDone.filter((m) => m.round === round).map((m) => m.stage));
    const summary = await runRound({ ...inputs, outDir, offline, dirOf, round, done: stages, rejected, trained: done, roundPrompts: config.replay.gamma < 1 ? roundPrompts : [] });
    published.set(round, summary.checkpoint);
    if (summary.checkpoint.gate?.promoted === false) rejected.add(round);
    rounds.push(summary);
  }
  await inputs.metrics.flush();
  const policies = [...published.values()].filter((c) => c.version >= 0).sort((a, b) => a.version - b.version);
  const gated = healthEnabled(config);
  return { checkpoints: policies.filter((c) => isUsable(c, gated)), rejected: policies.filter((c) => !isUsable(c, gated)), rounds };
}

interface RoundInputs extends RunInputs {
  done: ReadonlySet<string>;
  rejected: ReadonlySet<number>;
  /** v_t when the train stage published it before a restart (the health stage had not decided yet). */
  trained?: Checkpoint;
  round: number;
  roundPrompts: PromptRecord[];
  offline: OfflinePair[];
  dirOf: (version: number) => string;
}

/** Round t of Algorithm 1 (src/service/dice-round.ts) on the batch executor. */
async function runRound(inputs: RoundInputs): Promise<RoundSummary> {
  const { config, round, metrics } = inputs;
  const versions = roundVersions(round, config.method, inputs.rejected);
  const rlog = inputs.log.child({ round });
  rlog.info('round starts', {
    policy: versionLabel(versions.policy),
    scoringReference: versionLabel(versions.scoringReference),
    trainingReference: versionLabel(versions.trainingReference),
    prompts: inputs.roundPrompts.length,
  });
  const executor = new BatchExecutor({ bus: inputs.bus, namespace: inputs.namespace, round, metrics, log: inputs.log, done: inputs.done, afterStage: inputs.afterStage });
  let progress: Progress | null = null;
  const outcome = await diceRound(
    {
      round,
      config,
      dirOf: inputs.dirOf,
      runId: inputs.namespace,
      roundPrompts: inputs.roundPrompts,
      offline: inputs.offline,
      rejected: inputs.rejected,
      replay: { openReference: (modelDir, c) => executor.clock('replay', Scorer.open({ modelDir, ...engineOptions(c) })) },
      train: {
        checkpointDir: inputs.dirOf(versions.produces),
        clock: (work) => executor.clock('train', work),
        onStep: (step, loss, accuracy) => {
          progress ??= new Progress(`train r${round}`, config.train.steps);
          progress.tick(1, `loss ${loss.toFixed(4)} acc ${accuracy.toFixed(2)}`);
        },
      },
      emit: executor.emit,
    },
    executor,
  );
  (progress as Progress | null)?.finish();
  // A train stage done before a restart published its checkpoint, so runDice skipped the round (or only the health stage was left).
  const checkpoint = outcome.health?.checkpoint ?? outcome.checkpoint ?? inputs.trained;
  if (!checkpoint) throw new Error(`round ${round}: the train stage is marked done but v${versions.produces} is not on the checkpoints topic`);
  return {
    round,
    versions,
    windows: (outcome.windows ?? []).map(({ pairs: _pairs, ...rest }) => rest),
    generatedPairs: outcome.replay?.mix?.generatedCount ?? 0,
    offlinePairs: outcome.replay?.mix?.offlineCount ?? 0,
    checkpoint,
    health: outcome.health?.record ?? null,
    seconds: executor.seconds,
    engineSeconds: executor.engineSeconds,
    resumed: false,
  };
}

/**
 * Completion markers of whole-round stages: the markers topic, and for runs recorded before it
 * existed, the 'stage-done' events those runs wrote on the metrics topic.
 */
export async function readStagesDone(bus: Bus, namespace: string): Promise<Array<{ stage: string; round: number | null }>> {
  const markers = (await readWholeTopic(bus, topicName(namespace, 'markers'), markersTopic)).filter((m) => m.kind === 'done');
  const legacy = (await readWholeTopic(bus, topicName(namespace, 'metrics'), metricsTopic)).filter((m) => m.type === LEGACY_STAGE_DONE);
  return [...markers, ...legacy];
}

/** Rounds whose prompt order is recorded (the markers topic's 'prompts' markers): round → prompt ids. */
export async function readPromptOrders(bus: Bus, namespace: string): Promise<Map<number, string[]>> {
  return promptOrdersOf(await readWholeTopic(bus, topicName(namespace, 'markers'), markersTopic));
}

/** The metrics event type that marked a stage done before the markers topic (read, never written). */
const LEGACY_STAGE_DONE = 'stage-done';

/**
 * What a replay needs to re-derive the run bit for bit: the validated config (seed, sampling, α, γ,
 * training) and the runtime (onnxruntime version, intra-op threads: parallel reductions may reorder
 * sums), as a 'run/config' metrics event — once per start, so a resumed run records each start.
 */
export async function recordRunMetadata(
  inputs: Pick<RunInputs, 'metrics' | 'config' | 'policyDir' | 'refDir' | 'promptsFile' | 'offlineFile'>,
  /** dice serve: its prompts come from this topic (not a file). */
  served?: { promptsTopic: string },
): Promise<void> {
  const ort = await import('onnxruntime-node');
  inputs.metrics.stageEvent(
    stageEvent('run/config', {
      config: JSON.stringify(inputs.config),
      policyDir: resolve(inputs.policyDir),
      refDir: resolve(inputs.refDir),
      promptsFile: served ? `topic ${served.promptsTopic}` : resolve(inputs.promptsFile),
      offlineFile: inputs.offlineFile ? resolve(inputs.offlineFile) : null,
      onnxruntime: ort.env.versions.common,
      threads: inputs.config.threads,
      node: process.version,
      executor: served ? 'serve' : 'run',
    }),
    null,
  );
  await inputs.metrics.flush();
}

export function checkpointExists(dir: string): boolean {
  return existsSync(join(dir, 'manifest.json'));
}
