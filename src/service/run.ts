import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import type { Bus, TopicRecords } from '../../topics/bus.ts';
import { batchesTopic, batchKey, type TrainingBatch } from '../../topics/batches.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { metricsTopic, type MetricEvent } from '../../topics/metrics.ts';
import { offlineTopic, type OfflinePair } from '../../topics/offline.ts';
import { pairsTopic, type PreferencePair } from '../../topics/pairs.ts';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { alphaPairs, type AlphaWindow } from '../../operators/alpha.ts';
import { replay } from '../../operators/replay.ts';
import { promptChunks, sample } from '../../operators/sample.ts';
import { score } from '../../operators/score.ts';
import { versionLabel } from '../../operators/train.ts';
import type { RunConfig } from '../config/schema.ts';
import { alphaOptions, engineOptions, generateParams } from './round-config.ts';
import { trainRound } from './train-round.ts';
import { verifyCheckpoint } from '../model/checkpoint.ts';
import { readChatTemplate } from '../model/load.ts';
import { Sampler } from '../engine/sampler.ts';
import { Scorer } from '../engine/scorer.ts';
import type { Logger } from '../util/log.ts';
import { Progress } from '../util/log.ts';
import { ingestFile, offlineDefaults, promptDefaults } from './ingest.ts';
import { publishInitialLineage, REF0_VERSION, roundVersions, type RoundVersions } from './lineage.ts';
import type { MetricsEmitter } from './metrics.ts';
import { commitAll, readRemaining, readWholeTopic, runPerRecordStage } from './stage-runner.ts';

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
  checkpoint: Checkpoint;
  /** Wall seconds per stage, and the part of it spent in the engines (loading, sampling, scoring, training). */
  seconds: Record<string, number>;
  engineSeconds: Record<string, number>;
  resumed: boolean;
}

export interface RunResult {
  checkpoints: Checkpoint[];
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
  const stagesDone = (await readWholeTopic(bus, T('metrics'), metricsTopic)).filter((m) => m.type === STAGE_DONE);
  const rounds: RoundSummary[] = [];
  for (let round = 1; round <= config.rounds; round++) {
    const done = published.get(round);
    if (done) {
      const manifest = verifyCheckpoint(done.location);
      if (manifest.sha256 !== done.sha256) throw new Error(`${done.location}: weights hash ${manifest.sha256} differs from the published ${done.sha256}`);
      log.info('round already done', { round, version: round, sha256: done.sha256 });
      rounds.push({ round, versions: roundVersions(round, config.method), windows: [], generatedPairs: 0, offlinePairs: 0, checkpoint: done, seconds: {}, engineSeconds: {}, resumed: true });
      continue;
    }
    const roundPrompts = prompts.values.slice((round - 1) * perRound, round * perRound);
    const summary = await runRound({ ...inputs, outDir, offline, dirOf, round, stagesDone, roundPrompts: config.replay.gamma < 1 ? roundPrompts : [] });
    published.set(round, summary.checkpoint);
    rounds.push(summary);
  }
  await inputs.metrics.flush();
  return { checkpoints: [...published.values()].filter((c) => c.version >= 0).sort((a, b) => a.version - b.version), rounds };
}

interface RoundInputs extends RunInputs {
  stagesDone: MetricEvent[];
  round: number;
  roundPrompts: PromptRecord[];
  offline: OfflinePair[];
  dirOf: (version: number) => string;
}

async function runRound(inputs: RoundInputs): Promise<RoundSummary> {
  const { bus, namespace, config, round, log, metrics } = inputs;
  const T = (base: TopicBaseName) => topicName(namespace, base);
  const group = (stage: string) => `${namespace}.${stage}.r${round}`;
  const versions = roundVersions(round, config.method);
  const engine = engineOptions(config);
  const seconds: Record<string, number> = {};
  // Engine time (model loading, sampling, scoring, training) vs the stage's wall time: the rest is
  // the bus, encoding and orchestration, which should stay a small share of a round.
  const engineSeconds: Record<string, number> = {};
  const clocked = <R>(stage: string, work: Promise<R>): Promise<R> => {
    const t0 = performance.now();
    return work.finally(() => {
      engineSeconds[stage] = (engineSeconds[stage] ?? 0) + (performance.now() - t0) / 1000;
    });
  };
  const timed = async <R>(stage: string, work: () => Promise<R>): Promise<R> => {
    const t0 = performance.now();
    const result = await work();
    seconds[stage] = (performance.now() - t0) / 1000;
    const engineTime = engineSeconds[stage] ?? 0;
    metrics.emit(stage, 'stage-time', round, { seconds: seconds[stage], engineSeconds: engineTime, overheadSeconds: seconds[stage] - engineTime });
    await inputs.afterStage?.(round, stage);
    return result;
  };
  const rlog = log.child({ round });
  // Stages that take a whole round at once mark completion in the same transaction as their outputs.
  const done = new Set(inputs.stagesDone.filter((m) => m.round === round).map((m) => m.stage));
  rlog.info('round starts', {
    policy: versionLabel(versions.policy),
    scoringReference: versionLabel(versions.scoringReference),
    trainingReference: versionLabel(versions.trainingReference),
    prompts: inputs.roundPrompts.length,
  });
  metrics.emit('round', 'start', round, {
    policyVersion: versions.policy,
    referenceVersion: versions.scoringReference,
    trainingReferenceVersion: versions.trainingReference,
    prompts: inputs.roundPrompts.length,
  });

  // Offline prompts are rendered like sampled ones, so both kinds of pair see the same context.
  const useChat = config.sampling.chatTemplate && readChatTemplate(inputs.dirOf(versions.policy)) !== null;
  const windows: AlphaWindow[] = [];
  if (inputs.roundPrompts.length > 0) {
    const ids = new Set(inputs.roundPrompts.map((p) => p.promptId));
    await timed('sample', async () => {
      const engineSampler = await clocked('sample', Sampler.open({ modelDir: inputs.dirOf(versions.policy), ...engine }));
      const sampler = { generate: (...a: Parameters<Sampler['generate']>) => clocked('sample', engineSampler.generate(...a)), close: () => engineSampler.close() };
      const progress = new Progress(`sample r${round}`, ids.size);
      try {
        let tokens = 0;
        const t0 = performance.now();
        const counts = await runPerRecordStage<PromptRecord, SamplesGroup>({
          bus,
          groupId: group('sample'),
          input: { topic: T('prompts'), contract: promptsTopic, deadLetterTopic: T('dead-letter') },
          accept: (p) => ids.has(p.promptId),
          keyOfInput: (p) => p.promptId,
          keyOfOutput: (g) => g.promptId,
          operator: () =>
            sample({
              sampler,
              policyVersion: versions.policy,
              round,
              runSeed: config.seed,
              k: config.sampling.k,
              params: generateParams(config),
              chat: useChat,
              // Batch composition changes float rounding: fixed chunks of the round's prompt list make
              // it independent of arrival timing and restarts, so results repeat bit for bit.
              chunkOf: promptChunks(inputs.roundPrompts, config.sampling.promptsPerCall),
            }),
          outputs: (g) => [{ topic: T('samples'), records: [{ key: g.promptId, value: samplesTopic.encode(g) }] }],
          untilEnd: true,
          onOutput: (g, { lag }) => {
            const n = g.responses.reduce((s, r) => s + r.tokenLength, 0);
            tokens += n;
            progress.tick(1);
            metrics.emit('sample', 'group', round, {
              promptId: g.promptId,
              tokens: n,
              tokensPerSecond: tokens / ((performance.now() - t0) / 1000),
              meanLength: g.responses.reduce((s, r) => s + r.charLength, 0) / g.responses.length,
              truncated: g.responses.filter((r) => r.finishReason === 'length').length,
              lag,
            });
          },
          onRejected: (r) => rlog.warn('prompt rejected by the sampler (→ dead-letter)', { promptId: r.key, error: r.error }),
        });
        rlog.info('sampled', { ...counts, tokens });
      } finally {
        progress.finish();
        await sampler.close();
      }
    });

    await timed('score', async () => {
      const engineScorer = await clocked('score', Scorer.open({ modelDir: inputs.dirOf(versions.scoringReference), ...engine }));
      const reference = { score: (...a: Parameters<Scorer['score']>) => clocked('score', engineScorer.score(...a)), close: () => engineScorer.close() };
      const progress = new Progress(`score r${round}`, ids.size);
      let stale = 0;
      try {
        const counts = await runPerRecordStage<SamplesGroup, ScoredGroup>({
          bus,
          groupId: group('score'),
          input: { topic: T('samples'), contract: samplesTopic, deadLetterTopic: T('dead-letter') },
          accept: (g) => g.round === round,
          keyOfInput: (g) => g.promptId,
          keyOfOutput: (g) => g.promptId,
          operator: (drop) =>
            score({
              reference,
              referenceVersion: versions.scoringReference,
              beta: config.reward.beta,
              expectedPolicyVersion: config.strictOnPolicy ? versions.policy : undefined,
              onStale: (g) => {
                stale++;
                drop(g.promptId);
              },
              groupsPerCall: 1, // see promptsPerCall above
            }),
          outputs: (g) => [{ topic: T('scored'), records: [{ key: g.promptId, value: scoredTopic.encode(g) }] }],
          untilEnd: true,
          onOutput: (g, { lag }) => {
            progress.tick(1);
            const rewards = g.responses.map((r) => r.reward);
            metrics.emit('score', 'group', round, {
              promptId: g.promptId,
              meanReward: rewards.reduce((a, b) => a + b, 0) / rewards.length,
              rewardSpread: Math.max(...rewards) - Math.min(...rewards),
              lag,
            });
          },
        });
        if (stale > 0) metrics.emit('score', 'stale-dropped', round, { count: stale });
        rlog.info('scored', { ...counts, stale });
      } finally {
        progress.finish();
        await reference.close();
      }
    });

    if (done.has('alpha')) rlog.info('alpha stage already done');
    else await timed('alpha', async () => {
      const consumed = await readRemaining(bus, group('alpha'), { topic: T('scored'), contract: scoredTopic, deadLetterTopic: T('dead-letter') });
      const groups = consumed.map((d) => d.value).filter((g) => g.round === round).sort(byPromptId);
      const made = await lastValueFrom(
        from(groups).pipe(
          alphaPairs(alphaOptions(config, round)),
          toArray(),
        ),
        { defaultValue: [] as AlphaWindow[] },
      );
      windows.push(...made);
      const outputs: TopicRecords[] = [
        { topic: T('pairs'), records: made.flatMap((w) => w.pairs.map((p) => ({ key: p.promptId, value: pairsTopic.encode(p) }))) },
      ];
      await commitAll(bus, group('alpha'), [...outputs, stageDone(T('metrics'), 'alpha', round)], consumed);
      for (const w of made) {
        metrics.emit('alpha', 'window', round, {
          windowId: w.windowId,
          alpha: w.alpha,
          objective: w.solution?.objective ?? null,
          lengthDiffBefore: w.lengths?.before.stats.mean ?? null,
          lengthDiffAfter: w.lengths?.after.stats.mean ?? null,
          groupsIn: w.filter.groupsIn,
          groupsKept: w.filter.groupsKept,
          pairs: w.pairs.length,
          truncatedDropped: w.filter.dropped.truncated,
        });
        rlog.info('alpha window', {
          windowId: w.windowId,
          alpha: w.alpha,
          lengthDiffBefore: w.lengths?.before.stats.mean,
          lengthDiffAfter: w.lengths?.after.stats.mean,
          pairs: w.pairs.length,
        });
      }
    });
  }

  let offlineUsed = 0;
  let generatedUsed = 0;
  if (done.has('replay')) rlog.info('replay stage already done');
  else await timed('replay', async () => {
    const consumed = await readRemaining(bus, group('replay'), { topic: T('pairs'), contract: pairsTopic, deadLetterTopic: T('dead-letter') });
    const generated = consumed.map((d) => d.value).filter((p) => p.round === round).sort((a, b) => (a.pairId < b.pairId ? -1 : a.pairId > b.pairId ? 1 : 0));
    const needsReference = config.replay.gamma > 0 || versions.trainingReference !== versions.policy;
    const engineScorer = needsReference ? await clocked('replay', Scorer.open({ modelDir: inputs.dirOf(versions.trainingReference), ...engine })) : null;
    const reference = engineScorer && { score: (...a: Parameters<Scorer['score']>) => clocked('replay', engineScorer.score(...a)), close: () => engineScorer.close() };
    try {
      const batches = await lastValueFrom(
        from(generated).pipe(
          replay({
            round,
            runId: namespace,
            runSeed: config.seed,
            gamma: config.replay.gamma,
            offline: inputs.offline,
            reference: reference ?? { score: async () => [] },
            referenceIsSamplingPolicy: versions.trainingReference === versions.policy,
            chat: useChat,
            steps: config.train.steps,
            batchSize: config.train.batch,
            onMix: (mix) => {
              offlineUsed = mix.offlineCount;
              generatedUsed = mix.generatedCount;
              metrics.emit('replay', 'mix', round, {
                size: mix.size,
                offline: mix.offlineCount,
                generated: mix.generatedCount,
                offlineExcluded: mix.offlineExcluded,
                gamma: config.replay.gamma,
              });
            },
          }),
          toArray(),
        ),
      );
      if (batches.length === 0) {
        const dropped = windows.map((w) => w.filter);
        throw new Error(
          `round ${round}: no training pairs (generated ${generated.length}, offline share ${config.replay.gamma}); ` +
            `the filters kept ${dropped.reduce((s, f) => s + f.groupsKept, 0)} of ${dropped.reduce((s, f) => s + f.groupsIn, 0)} groups ` +
            `(truncated responses dropped: ${dropped.reduce((s, f) => s + f.dropped.truncated, 0)}): raise --max-new-tokens, or set filters.dropTruncated=false`,
        );
      }
      await commitAll(
        bus,
        group('replay'),
        [{ topic: T('batches'), records: batches.map((b) => ({ key: batchKey(b), value: batchesTopic.encode(b) })) }, stageDone(T('metrics'), 'replay', round)],
        consumed,
      );
      rlog.info('replay mix', { generated: generatedUsed, offline: offlineUsed, batches: batches.length });
    } finally {
      await reference?.close();
    }
  });

  const checkpoint = await timed('train', async () => {
    const consumed = await readRemaining(bus, group('train'), { topic: T('batches'), contract: batchesTopic, deadLetterTopic: T('dead-letter') });
    const batches: TrainingBatch[] = consumed.map((d) => d.value).filter((b) => b.round === round).sort((a, b) => a.step - b.step);
    if (batches.length === 0) throw new Error(`round ${round}: no training batches on ${T('batches')}`);
    const progress = new Progress(`train r${round}`, batches.length);
    try {
      const { checkpoint } = await trainRound({
        config,
        round,
        versions,
        batches,
        dirOf: inputs.dirOf,
        checkpointDir: inputs.dirOf(versions.produces),
        clock: (work) => clocked('train', work),
        onStep: (e) => {
          progress.tick(1, `loss ${e.metrics.loss.toFixed(4)} acc ${e.metrics.rewardAccuracy.toFixed(2)}`);
          metrics.emit('train', 'step', round, {
            step: e.step,
            loss: e.metrics.loss,
            rewardAccuracy: e.metrics.rewardAccuracy,
            chosenReward: e.metrics.chosenReward,
            rejectedReward: e.metrics.rejectedReward,
            margin: e.metrics.margin,
            gradNorm: e.metrics.gradNorm,
            lr: e.metrics.lr,
            tokensPerSecond: e.metrics.tokens / e.metrics.seconds,
          });
        },
      });
      const last = { checkpoint };
      await commitAll(
        bus,
        group('train'),
        [{ topic: T('checkpoints'), records: [{ key: String(last.checkpoint.version), value: checkpointsTopic.encode(last.checkpoint) }] }, stageDone(T('metrics'), 'train', round)],
        consumed,
      );
      metrics.emit('checkpoint', 'published', round, {
        version: last.checkpoint.version,
        parentVersion: last.checkpoint.parentVersion,
        referenceVersion: last.checkpoint.referenceVersion,
        sha256: last.checkpoint.sha256,
        finalLoss: last.checkpoint.metrics.finalLoss,
      });
      rlog.info('checkpoint', { version: versionLabel(last.checkpoint.version), sha256: last.checkpoint.sha256, ...last.checkpoint.metrics });
      return last.checkpoint;
    } finally {
      progress.finish();
    }
  });

  return {
    round,
    versions,
    windows: windows.map(({ pairs: _pairs, ...rest }) => rest),
    generatedPairs: generatedUsed,
    offlinePairs: offlineUsed,
    checkpoint,
    seconds,
    engineSeconds,
    resumed: false,
  };
}

/** The metrics event type of a whole-round stage's completion marker (replays seed it for stages taken from a recording). */
export const STAGE_DONE = 'stage-done';

/**
 * What a replay needs to re-derive the run bit for bit: the validated config (seed, sampling, α, γ,
 * training) and the runtime (onnxruntime version, intra-op threads: parallel reductions may reorder
 * sums), as a 'run/config' metrics event — once per start, so a resumed run records each start.
 */
async function recordRunMetadata(inputs: RunInputs): Promise<void> {
  const ort = await import('onnxruntime-node');
  inputs.metrics.emit('run', 'config', null, {
    config: JSON.stringify(inputs.config),
    policyDir: resolve(inputs.policyDir),
    refDir: resolve(inputs.refDir),
    promptsFile: resolve(inputs.promptsFile),
    offlineFile: inputs.offlineFile ? resolve(inputs.offlineFile) : null,
    onnxruntime: ort.env.versions.common,
    threads: inputs.config.threads,
    node: process.version,
  });
  await inputs.metrics.flush();
}

/** The completion marker of a whole-round stage, produced atomically with the stage's outputs. */
function stageDone(metricsTopicName: string, stage: string, round: number): TopicRecords {
  const event: MetricEvent = { stage, type: STAGE_DONE, time: Date.now(), round };
  return { topic: metricsTopicName, records: [{ key: stage, value: metricsTopic.encode(event) }] };
}

function byPromptId(a: { promptId: string }, b: { promptId: string }): number {
  return a.promptId < b.promptId ? -1 : a.promptId > b.promptId ? 1 : 0;
}

export function checkpointExists(dir: string): boolean {
  return existsSync(join(dir, 'manifest.json'));
}
