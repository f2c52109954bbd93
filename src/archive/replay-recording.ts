import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BusRecord } from '../../topics/bus.ts';
import type { TopicContract } from '../../topics/contract.ts';
import { batchesTopic, type TrainingBatch } from '../../topics/batches.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { healthTopic, type HealthRecord } from '../../topics/health.ts';
import { deadLetterTopic } from '../../topics/dead-letter.ts';
import { metricsTopic, type MetricEvent } from '../../topics/metrics.ts';
import { offlineTopic, type OfflinePair } from '../../topics/offline.ts';
import { pairsTopic, type PreferencePair } from '../../topics/pairs.ts';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { markersTopic, promptOrdersOf } from '../../topics/markers.ts';
import { topicName, type TopicBaseName } from '../../topics/registry.ts';
import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { parseRunConfig, type RunConfig } from '../config/schema.ts';
import { sha256File, weightsFileOf } from '../model/checkpoint.ts';
import type { RunRecording } from './read-archive.ts';

/** A decoded record with the raw record it came from (its bytes and bus position). */
export interface Recorded<T> {
  value: T;
  record: BusRecord;
}

/** What `dice run` recorded about itself (the 'run/config' metrics event). */
export interface RecordedRuntime {
  onnxruntime: string | null;
  threads: number | null;
  node: string | null;
  /** How many times the run was started (a resumed run records each start). */
  starts: number;
}

/**
 * A recorded `dice run`, decoded: its config, every stage's records, and its checkpoint lineage.
 * Records that fail their topic's contract are counted, not used: the run dead-lettered them too.
 */
export interface RecordedRun {
  source: string;
  namespace: string | undefined;
  config: RunConfig;
  runtime: RecordedRuntime;
  prompts: Recorded<PromptRecord>[];
  offline: Recorded<OfflinePair>[];
  samples: Recorded<SamplesGroup>[];
  scored: Recorded<ScoredGroup>[];
  pairs: Recorded<PreferencePair>[];
  batches: Recorded<TrainingBatch>[];
  /** By version: −1 = π_ref(0), 0 = π_θ(0), 1.. = trained. */
  checkpoints: Map<number, Checkpoint>;
  /** The health stage's records (a run with a health gate), one per checked version. */
  health: Recorded<HealthRecord>[];
  metrics: MetricEvent[];
  undecodable: Partial<Record<TopicBaseName, number>>;
  /** promptId → round, for prompts the sampler refused (dead-lettered instead of sampled). */
  samplerRejected: Map<string, number>;
  /** The rounds the recording holds work of (from its config and its records). */
  rounds: number;
  /** Round → its prompt ids in the order `dice run` took them (the markers topic; absent in older runs). */
  promptOrders: Map<number, string[]>;
}

/** Rewrites recorded checkpoint locations (a run directory moved or copied elsewhere): longest matching prefix wins. */
export type Relocations = Array<{ from: string; to: string }>;

export async function loadRecordedRun(recording: RunRecording): Promise<RecordedRun> {
  const undecodable: Partial<Record<TopicBaseName, number>> = {};
  const decodeAll = async <T>(base: TopicBaseName, contract: TopicContract<T>): Promise<Recorded<T>[]> => {
    const out: Recorded<T>[] = [];
    for (const record of await recording.records(base)) {
      try {
        out.push({ value: contract.decode(record.value), record });
      } catch {
        undecodable[base] = (undecodable[base] ?? 0) + 1;
      }
    }
    return out;
  };
  const metrics = (await decodeAll('metrics', metricsTopic)).map((m) => m.value);
  const starts = metrics.filter((m) => m.stage === 'run' && m.type === 'config');
  if (starts.length === 0) {
    throw new Error(
      `${recording.source}: no 'run/config' event on the ${topicName(recording.namespace, 'metrics')} topic: ` +
        `not a dice run, or one recorded before runs recorded their config (the config is needed to re-derive anything)`,
    );
  }
  // A resumed run records its config at each start; they must agree, or no single config made the records.
  const configs = new Set(starts.map((s) => s.config));
  if (configs.size > 1) throw new Error(`${recording.source}: the run was restarted with different configs (${configs.size} distinct 'run/config' events): it cannot be replayed as one run`);
  const first = starts[0];
  let config: RunConfig;
  try {
    config = parseRunConfig(JSON.parse(String(first.config)), `recorded config of ${recording.source}`);
  } catch (err) {
    throw new Error(`${recording.source}: the recorded run/config is unusable: ${(err as Error).message}`);
  }
  const checkpoints = new Map<number, Checkpoint>();
  for (const c of await decodeAll('checkpoints', checkpointsTopic)) checkpoints.set(c.value.version, c.value);
  const run: RecordedRun = {
    source: recording.source,
    namespace: recording.namespace,
    config,
    runtime: {
      onnxruntime: typeof first.onnxruntime === 'string' ? first.onnxruntime : null,
      threads: typeof first.threads === 'number' ? first.threads : null,
      node: typeof first.node === 'string' ? first.node : null,
      starts: starts.length,
    },
    prompts: await decodeAll('prompts', promptsTopic),
    offline: await decodeAll('offline', offlineTopic),
    samples: await decodeAll('samples', samplesTopic),
    scored: await decodeAll('scored', scoredTopic),
    pairs: await decodeAll('pairs', pairsTopic),
    batches: await decodeAll('batches', batchesTopic),
    checkpoints,
    health: await decodeAll('health', healthTopic),
    metrics,
    undecodable,
    samplerRejected: new Map(),
    rounds: 0,
    promptOrders: promptOrdersOf((await decodeAll('markers', markersTopic)).map((m) => m.value)),
  };
  // dice serve forms rounds as groups arrive and samples ahead of the trainer (bounded staleness): its
  // rounds are the ones it trained; a dice run's are its config's and any it recorded work of
  run.rounds = starts.some((s) => s.executor === 'serve')
    ? Math.max(0, ...[...checkpoints.values()].map((c) => c.round))
    : Math.max(
        config.rounds,
        ...[...run.samples, ...run.scored, ...run.pairs, ...run.batches].map((r) => r.value.round),
        ...[...checkpoints.values()].map((c) => c.round),
      );
  await markSamplerRejections(run, recording);
  return run;
}

/**
 * Prompts the sampler refused went to dead-letter instead of samples; their round is the last one
 * started before they were dead-lettered (metrics 'round/start' events and dead-letter times share a clock).
 */
async function markSamplerRejections(run: RecordedRun, recording: RunRecording): Promise<void> {
  const promptsTopicName = topicName(recording.namespace, 'prompts');
  const starts = run.metrics.filter((m) => m.stage === 'round' && m.type === 'start' && m.round !== null).sort((a, b) => a.time - b.time);
  for (const record of await recording.records('dead-letter')) {
    try {
      const d = deadLetterTopic.decode(record.value);
      // partition −1: refused at ingestion (never on the prompts topic), not by the sampler
      if (d.sourceTopic !== promptsTopicName || d.partition < 0 || d.key === null) continue;
      const round = [...starts].reverse().find((s) => s.time <= d.time)?.round;
      if (round !== undefined && round !== null) run.samplerRejected.set(d.key, round);
    } catch {
      run.undecodable['dead-letter'] = (run.undecodable['dead-letter'] ?? 0) + 1;
    }
  }
}

/** Values of a list of recorded records, in round `round` when given. */
export function valuesOf<T extends { round: number }>(list: Recorded<T>[], round?: number): T[] {
  return list.filter((r) => round === undefined || r.value.round === round).map((r) => r.value);
}

/**
 * The prompts in an order that gives `dice run` the recorded round split: each round's prompts
 * (the ones it sampled, and the ones its sampler refused) in the order of rounds, then the prompts
 * no round used. `dice run` splits its prompt file in file order, so this order reproduces which
 * prompt fell in which round; within a round, the run's recorded prompt order (its 'prompts' marker),
 * which the sample stage cuts its engine batches from, else the bus order.
 */
export function promptsInRoundOrder(run: RecordedRun): PromptRecord[] {
  const roundOf = new Map<string, number>(run.samplerRejected);
  for (const g of run.samples) if (!roundOf.has(g.value.promptId)) roundOf.set(g.value.promptId, g.value.round);
  const rank = new Map<string, number>();
  for (const ids of run.promptOrders.values()) ids.forEach((id, i) => rank.set(id, i));
  return run.prompts
    .map((p, i) => ({ p: p.value, i, round: roundOf.get(p.value.promptId) ?? Infinity, rank: rank.get(p.value.promptId) ?? Infinity }))
    .sort((a, b) => a.round - b.round || a.rank - b.rank || a.i - b.i)
    .map((x) => x.p);
}

/**
 * The directory of a recorded checkpoint, after checking that its weights are there and are the
 * ones recorded (sha256 of model.safetensors). Errors say which version, where, and what to do.
 */
export function checkpointDir(run: RecordedRun, version: number, relocations: Relocations = [], verified = new Set<string>()): string {
  const c = run.checkpoints.get(version);
  const label = version < 0 ? 'π_ref(0) (version −1)' : `v${version}`;
  if (!c) {
    throw new Error(`${run.source}: checkpoint ${label} is not on the recorded checkpoints topic (recorded: ${[...run.checkpoints.keys()].sort((a, b) => a - b).join(', ') || 'none'})`);
  }
  const dir = relocate(c.location, relocations);
  const weights = join(dir, weightsFileOf(dir)); // a LoRA checkpoint's adapter_model.safetensors
  const moved = dir === c.location ? '' : ` (recorded at ${c.location})`;
  if (!existsSync(weights)) {
    throw new Error(`checkpoint ${label}: ${weights}${moved} is gone: restore the run's checkpoint directories, or map their new place with --relocate OLD=NEW`);
  }
  if (!verified.has(weights)) {
    const sha = sha256File(weights);
    if (sha !== c.sha256) {
      throw new Error(`checkpoint ${label}: ${weights}${moved} has sha256 ${sha}, the recording says ${c.sha256}: the weights were altered or replaced; a replay would not be of this run`);
    }
    verified.add(weights);
  }
  return dir;
}

export function relocate(location: string, relocations: Relocations): string {
  const match = relocations
    .filter((r) => location === r.from || location.startsWith(r.from.endsWith('/') ? r.from : `${r.from}/`))
    .sort((a, b) => b.from.length - a.from.length)[0];
  return match ? match.to + location.slice(match.from.length) : location;
}

/** `OLD=NEW` command-line pairs as relocations. */
export function parseRelocations(pairs: string[] | undefined): Relocations {
  return (pairs ?? []).map((p) => {
    const eq = p.indexOf('=');
    if (eq <= 0 || eq === p.length - 1) throw new Error(`--relocate expects OLD=NEW (two directories), got ${JSON.stringify(p)}`);
    return { from: p.slice(0, eq).replace(/\/+$/, ''), to: p.slice(eq + 1).replace(/\/+$/, '') };
  });
}
