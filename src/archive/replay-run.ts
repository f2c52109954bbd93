import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Bus, ProduceRecord, TopicRecords } from '../../topics/bus.ts';
import { doneMarker, markersTopic, type StageMarker } from '../../topics/markers.ts';
import { metricsTopic } from '../../topics/metrics.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import type { RunConfig } from '../config/schema.ts';
import { writeJsonl } from '../io/records-file.ts';
import type { MetricsEmitter } from '../service/metrics.ts';
import { runDice, type RunResult } from '../service/run.ts';
import { readWholeTopic } from '../service/stage-runner.ts';
import type { Logger } from '../util/log.ts';
import { checkpointDir, promptsInRoundOrder, type Recorded, type RecordedRun, type Relocations } from './replay-recording.ts';

/**
 * `dice replay` into a new run. The recorded run's prompts and offline pairs are written to files
 * (prompts in an order that reproduces the recorded round split) and `dice run` runs again from the
 * recorded π_θ(0) and π_ref(0) (sha256 checked), with the recorded config unless flags change it.
 *
 * `fromStage` S takes the round-1 records up to S from the recording and runs what follows S again:
 *
 *   S = prompts   nothing taken: every stage runs again (a plain re-run)
 *   S = samples   round-1 samples taken; round 1 scores, pairs, mixes, trains again
 *   S = scored    round-1 samples + scored taken; round 1 pairs (new α rule), mixes, trains again
 *   S = pairs     … + pairs taken; round 1 mixes (new γ) and trains again
 *   S = batches   … + batches taken; round 1 trains again (new lr, loss, …)
 *
 * Rounds ≥ 2 always run in full: their recorded records were made by the recorded v1, v2, …, and
 * once round 1 is re-run its v1 is a different model, so reusing them would mix two lineages.
 *
 * How it is done: the taken records are produced, with their recorded bytes, onto the new run's
 * topics in one atomic unit, together with the completion markers of the whole-round stages they
 * stand for (alpha, replay) and a 'seeded' marker (markers topic); the round-1 consumer groups of the
 * per-record stages they stand for (sample, score) are moved to the end of their input topics. The
 * new run then resumes exactly as an interrupted `dice run` would, from the first stage not done.
 * Running the same replay again continues it (resumable like dice run).
 */

export const REPLAY_FROM_STAGES = ['prompts', 'samples', 'scored', 'pairs', 'batches'] as const;
export type ReplayFromStage = (typeof REPLAY_FROM_STAGES)[number];

export interface ReplayRunOptions {
  run: RecordedRun;
  /** The new run's bus, namespace and directory (checkpoints v1, v2, …; the replay's input files). */
  bus: Bus;
  namespace: string;
  outDir: string;
  /** The recorded config with the replay's changes applied. */
  config: RunConfig;
  fromStage: ReplayFromStage;
  relocations?: Relocations;
  /** Weights files whose sha256 was already checked (by the caller, before it opened anything). */
  verified?: Set<string>;
  log: Logger;
  metrics: MetricsEmitter;
}

export interface ReplayedCheckpoint {
  version: number;
  sha256: string;
  /** The recorded checkpoint's sha256 for the same version (null: the recording has none). */
  recordedSha256: string | null;
  identical: boolean;
}

export interface ReplayRunResult {
  result: RunResult;
  /** Records taken from the recording, per topic (base name). */
  taken: Partial<Record<TopicBaseName, number>>;
  checkpoints: ReplayedCheckpoint[];
}

/** A replay's seeding: on the markers topic, or (replays made before it) a 'replay/seeded' metrics event. */
async function readSeeding(bus: Bus, namespace: string): Promise<{ from: unknown; fromStage: unknown } | undefined> {
  const marker = (await readWholeTopic(bus, topicName(namespace, 'markers'), markersTopic)).find((m) => m.kind === 'seeded');
  if (marker) return marker;
  const legacy = (await readWholeTopic(bus, topicName(namespace, 'metrics'), metricsTopic)).find((m) => m.stage === 'replay' && m.type === 'seeded');
  return legacy && { from: legacy.from, fromStage: legacy.fromStage };
}

export async function replayRun(options: ReplayRunOptions): Promise<ReplayRunResult> {
  const { run, bus, namespace, config, fromStage, log } = options;
  const outDir = resolve(options.outDir);
  const verified = options.verified ?? new Set<string>();
  const policyDir = checkpointDir(run, 0, options.relocations, verified);
  const refDir = checkpointDir(run, -1, options.relocations, verified);

  // The replay's inputs as files, so the new run records them like any run (and can be resumed).
  const inputs = join(outDir, 'replay-inputs');
  mkdirSync(inputs, { recursive: true });
  const prompts = promptsInRoundOrder(run);
  const promptsFile = join(inputs, 'prompts.jsonl');
  await writeJsonl(promptsFile, prompts);
  let offlineFile: string | undefined;
  if (run.offline.length > 0) {
    offlineFile = join(inputs, 'offline.jsonl');
    await writeJsonl(offlineFile, run.offline.map((o) => o.value));
  }

  checkReplayPlan(run, config, fromStage);
  const depth = REPLAY_FROM_STAGES.indexOf(fromStage);
  const taken: Partial<Record<TopicBaseName, number>> = {};
  if (depth > 0) {
    const T = (base: TopicBaseName) => topicName(namespace, base);
    await createPipelineTopics(bus, namespace);
    const already = await readSeeding(bus, namespace);
    if (already) {
      if (already.fromStage !== fromStage || already.from !== run.source) {
        throw new Error(
          `${bus.url} namespace ${namespace} already holds a replay of ${already.from} from stage ${already.fromStage}: ` +
            `use a new --out (or --namespace) for a replay of ${run.source} from ${fromStage}`,
        );
      }
      log.info('replay already seeded: continuing it', { fromStage });
    } else {
      const round1 = <T extends { round: number }>(list: Recorded<T>[]) => list.filter((r) => r.value.round === 1);
      const raw = (list: Recorded<unknown>[]): ProduceRecord[] => list.map((r) => ({ key: r.record.key, value: r.record.value, headers: r.record.headers }));
      const outputs: TopicRecords[] = [];
      const take = (base: TopicBaseName, list: Recorded<unknown>[]) => {
        outputs.push({ topic: T(base), records: raw(list) });
        taken[base] = list.length;
      };
      // Prompts in round order: those dice run's ingestion then finds present (it produces none again).
      const byId = new Map(run.prompts.map((p) => [p.value.promptId, p]));
      take('prompts', prompts.map((p) => byId.get(p.promptId)!));
      take('samples', round1(run.samples));
      if (depth >= 2) take('scored', round1(run.scored));
      if (depth >= 3) take('pairs', round1(run.pairs));
      if (depth >= 4) take('batches', round1(run.batches));
      const now = Date.now();
      const markers: StageMarker[] = [
        ...(depth >= 3 ? [doneMarker('alpha', 1, now)] : []),
        ...(depth >= 4 ? [doneMarker('replay', 1, now)] : []),
        { kind: 'seeded', stage: 'replay', time: now, round: null, from: run.source, fromStage, recordedNamespace: run.namespace ?? null },
      ];
      outputs.push({ topic: T('markers'), records: markers.map((m) => ({ key: m.stage, value: markersTopic.encode(m) })) });
      await bus.produceAndCommit(`${namespace}.replay-seed`, outputs.filter((o) => o.records.length > 0), []);
      log.info('round 1 taken from the recording', { fromStage, ...taken });
    }
    // Idempotent, so also done on a resumed replay (the process may have stopped between seeding and here).
    await bus.seek(`${namespace}.sample.r1`, T('prompts'), { kind: 'end' });
    if (depth >= 2) await bus.seek(`${namespace}.score.r1`, T('samples'), { kind: 'end' });
  }

  const result = await runDice({ bus, namespace, config, policyDir, refDir, promptsFile, offlineFile, outDir, log, metrics: options.metrics });
  // rejected versions too: a replay re-derives them (and the gate's decision on them)
  const checkpoints = [...result.checkpoints, ...result.rejected]
    .filter((c) => c.version >= 1)
    .sort((a, b) => a.version - b.version)
    .map((c): ReplayedCheckpoint => {
      const recordedSha256 = run.checkpoints.get(c.version)?.sha256 ?? null;
      return { version: c.version, sha256: c.sha256, recordedSha256, identical: recordedSha256 === c.sha256 };
    });
  return { result, taken, checkpoints };
}

/**
 * Throws when the replay cannot be made as asked: with records taken from the recording, round 1
 * of the new run must hold the prompts the recorded round 1 held, or the taken records would answer
 * prompts the new run assigns to round 2 (and samples again there).
 */
export function checkReplayPlan(run: RecordedRun, config: RunConfig, fromStage: ReplayFromStage): void {
  if (fromStage === 'prompts') return;
  const orderedIds = promptsInRoundOrder(run).map((p) => p.promptId);
  const perRound = config.promptsPerRound || Math.ceil(orderedIds.length / config.rounds);
  const fresh = new Set(orderedIds.slice(0, perRound));
  const recorded = new Set([...run.samples.filter((g) => g.value.round === 1).map((g) => g.value.promptId), ...[...run.samplerRejected].filter(([, r]) => r === 1).map(([id]) => id)]);
  const same = fresh.size === recorded.size && [...recorded].every((id) => fresh.has(id));
  if (!same) {
    throw new Error(
      `the replay's config puts ${fresh.size} prompts in round 1 (rounds ${config.rounds}, promptsPerRound ${config.promptsPerRound || 'auto'}), ` +
        `the recorded round 1 had ${recorded.size}: keep --rounds/--prompts-per-round so round 1 holds the recorded prompts ` +
        `(e.g. --prompts-per-round ${recorded.size}), or replay --from-stage prompts`,
    );
  }
}
