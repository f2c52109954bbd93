import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import type { TopicContract } from '../../topics/contract.ts';
import { batchesTopic, batchKey, type TrainingBatch } from '../../topics/batches.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { pairsTopic, type PreferencePair } from '../../topics/pairs.ts';
import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { alphaPairs, type AlphaWindow } from '../../operators/alpha.ts';
import { replay } from '../../operators/replay.ts';
import { sampleBatch } from '../../operators/sample.ts';
import { scoreBatch } from '../../operators/score.ts';
import { Sampler } from '../engine/sampler.ts';
import { Scorer } from '../engine/scorer.ts';
import { readChatTemplate } from '../model/load.ts';
import { roundVersions } from '../service/lineage.ts';
import { alphaOptions, engineOptions, generateParams } from '../service/round-config.ts';
import { trainRound } from '../service/train-round.ts';
import type { Logger } from '../util/log.ts';
import { checkpointDir, valuesOf, type RecordedRun, type Relocations } from './replay-recording.ts';
import { firstDifference, reportValue } from './verify-diff.ts';
import { withCheckpointFile } from './verify-files.ts';

/**
 * `dice replay --verify`: re-derives every stage of every round from that stage's RECORDED inputs
 * and compares the result with the stage's recorded outputs, record by record and field by field:
 *
 *   samples      ← recorded prompts of the round + the recorded policy checkpoint π_θ(t−1)
 *   scored       ← recorded samples + the recorded scoring reference π_ref(t−1)
 *   pairs        ← recorded scored groups + the recorded config (filters, α rule, windows)
 *   batches      ← recorded pairs + recorded offline pairs (+ the training reference for their log-probs)
 *   checkpoints  ← recorded batches, training from the recorded parent weights; compares sha256
 *
 * Since every stage starts from the recording, a difference points at the one stage that made it:
 * an altered pairs record shows at pairs (re-derived from scored) and at batches (whose re-derivation
 * now starts from the altered pairs), while checkpoints (trained from the recorded batches) stay identical.
 */

export const VERIFY_STAGES = ['samples', 'scored', 'pairs', 'batches', 'checkpoints'] as const;
export type VerifyStage = (typeof VERIFY_STAGES)[number];

export interface StageDifference {
  /** The record's key on its topic (promptId; round/step for batches; version for checkpoints). */
  key: string;
  /** Field path within the record ('' when the record is missing on one side). */
  path: string;
  recorded: unknown;
  rederived: unknown;
}

export interface StageVerdict {
  round: number;
  stage: VerifyStage;
  /** The topic whose records were compared (base name). */
  topic: string;
  /** Records compared: the union of recorded and re-derived keys. */
  records: number;
  differing: number;
  identical: boolean;
  /** The first differing record (in key order) and its first differing field. */
  first: StageDifference | null;
  seconds: number;
}

export interface VerifyReport {
  source: string;
  identical: boolean;
  stages: StageVerdict[];
  runtime: { recorded: { onnxruntime: string | null; threads: number | null; node: string | null }; current: { onnxruntime: string; node: string } };
  warnings: string[];
}

export interface VerifyOptions {
  /** Rounds to verify (default: every recorded round). */
  rounds?: number[];
  stages?: readonly VerifyStage[];
  relocations?: Relocations;
  /** Re-derived checkpoints are written under workDir/v<t> (kept for inspection). */
  workDir: string;
  log: Logger;
  onVerdict?: (verdict: StageVerdict) => void;
}

export async function verifyRun(run: RecordedRun, options: VerifyOptions): Promise<VerifyReport> {
  const { log } = options;
  const stages = new Set(options.stages ?? VERIFY_STAGES);
  const rounds = options.rounds ?? Array.from({ length: run.rounds }, (_, i) => i + 1);
  const verified = new Set<string>();
  const dirOf = (version: number) => checkpointDir(run, version, options.relocations, verified);
  const ort = await import('onnxruntime-node');
  const warnings: string[] = [];
  if (run.runtime.onnxruntime && run.runtime.onnxruntime !== ort.env.versions.common) {
    warnings.push(`recorded with onnxruntime ${run.runtime.onnxruntime}, verifying with ${ort.env.versions.common}: kernels may round differently`);
  }
  for (const [topic, n] of Object.entries(run.undecodable)) warnings.push(`${n} ${topic} record(s) fail their contract and are left out (dead-lettered by the run, or altered since it)`);
  for (const w of warnings) log.warn(w);

  const verdicts: StageVerdict[] = [];
  const ctx: StageContext = { run, dirOf, workDir: resolve(options.workDir) };
  for (const round of rounds) {
    for (const stage of VERIFY_STAGES) {
      if (!stages.has(stage)) continue;
      const t0 = performance.now();
      const verdict = { round, stage, ...(await STAGE_CHECKS[stage](ctx, round)), seconds: (performance.now() - t0) / 1000 };
      verdicts.push(verdict);
      log.info(verdict.identical ? 'identical' : 'DIFFERENT', { round, stage, records: verdict.records, differing: verdict.differing, ...(verdict.first ? { first: verdict.first } : {}) });
      options.onVerdict?.(verdict);
    }
  }
  return {
    source: run.source,
    identical: verdicts.every((v) => v.identical),
    stages: verdicts,
    runtime: { recorded: { onnxruntime: run.runtime.onnxruntime, threads: run.runtime.threads, node: run.runtime.node }, current: { onnxruntime: ort.env.versions.common, node: process.version } },
    warnings,
  };
}

interface StageContext {
  run: RecordedRun;
  dirOf: (version: number) => string;
  workDir: string;
}

type Comparison = Pick<StageVerdict, 'topic' | 'records' | 'differing' | 'identical' | 'first'>;

const STAGE_CHECKS: Record<VerifyStage, (ctx: StageContext, round: number) => Promise<Comparison>> = {
  samples: verifySamples,
  scored: verifyScored,
  pairs: verifyPairs,
  batches: verifyBatches,
  checkpoints: verifyCheckpoint,
};

/** prompts → samples: each recorded group again from its prompt, one prompt per engine call (as dice run does). */
async function verifySamples({ run, dirOf }: StageContext, round: number): Promise<Comparison> {
  const { config } = run;
  const recorded = valuesOf(run.samples, round);
  const rederived = new Map<string, SamplesGroup | string>();
  if (recorded.length > 0) {
    const versions = roundVersions(round, config.method);
    const dir = dirOf(versions.policy);
    const prompts = new Map(run.prompts.map((p) => [p.value.promptId, p.value]));
    const sampler = await Sampler.open({ modelDir: dir, ...engineOptions(config) });
    try {
      const chat = config.sampling.chatTemplate && readChatTemplate(dir) !== null;
      for (const g of recorded) {
        const prompt = prompts.get(g.promptId);
        if (!prompt) {
          rederived.set(g.promptId, `prompt ${g.promptId} is not on the recorded prompts topic`);
          continue;
        }
        const [out] = await sampleBatch([prompt], { sampler, policyVersion: versions.policy, round, runSeed: config.seed, k: config.sampling.k, params: generateParams(config), chat });
        rederived.set(g.promptId, 'kind' in out ? `the sampler refused the prompt: ${out.error}` : out);
      }
    } finally {
      await sampler.close();
    }
  }
  return compareKeyed('samples', samplesTopic, keyed(recorded, (g) => g.promptId), rederived);
}

/** samples → scored: the recorded groups of the round the run would score (strictly on-policy: the round's policy only). */
async function verifyScored({ run, dirOf }: StageContext, round: number): Promise<Comparison> {
  const { config } = run;
  const versions = roundVersions(round, config.method);
  const inputs = valuesOf(run.samples, round).filter((g) => !config.strictOnPolicy || g.policyVersion === versions.policy);
  const rederived = new Map<string, ScoredGroup>();
  if (inputs.length > 0) {
    const reference = await Scorer.open({ modelDir: dirOf(versions.scoringReference), ...engineOptions(config) });
    try {
      for (const g of inputs) {
        const [s] = await scoreBatch([g], { reference, referenceVersion: versions.scoringReference, beta: config.reward.beta });
        rederived.set(g.promptId, s);
      }
    } finally {
      await reference.close();
    }
  }
  return compareKeyed('scored', scoredTopic, keyed(valuesOf(run.scored, round), (g) => g.promptId), rederived);
}

/** scored → pairs: the α windows over the round's recorded scored groups, in promptId order (as dice run does). */
async function verifyPairs({ run }: StageContext, round: number): Promise<Comparison> {
  const groups = valuesOf(run.scored, round).sort((a, b) => cmp(a.promptId, b.promptId));
  const windows = await lastValueFrom(from(groups).pipe(alphaPairs(alphaOptions(run.config, round)), toArray()), { defaultValue: [] as AlphaWindow[] });
  const rederived = keyed(windows.flatMap((w) => w.pairs), (p) => p.promptId);
  return compareKeyed('pairs', pairsTopic, keyed(valuesOf(run.pairs, round), (p) => p.promptId), rederived);
}

/** pairs → batches: the replay mix of the round's recorded pairs with the recorded offline pairs. */
async function verifyBatches({ run, dirOf }: StageContext, round: number): Promise<Comparison> {
  const { config } = run;
  const versions = roundVersions(round, config.method);
  const recorded = valuesOf(run.batches, round);
  const generated = valuesOf(run.pairs, round).sort((a, b) => cmp(a.pairId, b.pairId));
  const offline = run.offline.map((o) => o.value);
  let rederived = new Map<string, TrainingBatch>();
  if (generated.length > 0 || (config.replay.gamma > 0 && offline.length > 0)) {
    const needsReference = config.replay.gamma > 0 || versions.trainingReference !== versions.policy;
    const reference = needsReference ? await Scorer.open({ modelDir: dirOf(versions.trainingReference), ...engineOptions(config) }) : null;
    const policyDir = dirOf(versions.policy);
    try {
      const batches = await lastValueFrom(
        from(generated).pipe(
          replay({
            round,
            runId: recorded[0]?.runId ?? run.namespace ?? 'run',
            runSeed: config.seed,
            gamma: config.replay.gamma,
            offline,
            reference: reference ?? { score: async () => [] },
            referenceIsSamplingPolicy: versions.trainingReference === versions.policy,
            chat: config.sampling.chatTemplate && readChatTemplate(policyDir) !== null,
            steps: config.train.steps,
            batchSize: config.train.batch,
          }),
          toArray(),
        ),
      );
      rederived = keyed(batches, batchKey);
    } finally {
      await reference?.close();
    }
  }
  return compareKeyed('batches', batchesTopic, keyed(recorded, batchKey), rederived);
}

/** batches → checkpoint v_t: DPO steps over the recorded batches from the recorded π_θ(t−1); the weights' sha256 must match. */
async function verifyCheckpoint({ run, dirOf, workDir }: StageContext, round: number): Promise<Comparison> {
  const { config } = run;
  const versions = roundVersions(round, config.method);
  const batches = valuesOf(run.batches, round).sort((a, b) => a.step - b.step);
  const recordedCheckpoint = run.checkpoints.get(versions.produces);
  const recorded = new Map<string, Checkpoint>(recordedCheckpoint ? [[String(versions.produces), recordedCheckpoint]] : []);
  const rederived = new Map<string, Checkpoint>();
  if (batches.length > 0) {
    const out = join(workDir, `v${versions.produces}`);
    mkdirSync(workDir, { recursive: true });
    const { checkpoint } = await trainRound({ config, round, versions, batches, dirOf, checkpointDir: out });
    rederived.set(String(versions.produces), checkpoint);
  }
  // Where the weights went and when, and how long training took, are not part of what a replay reproduces.
  const comparable = (c: Checkpoint) => {
    const { trainSeconds: _s, ...metrics } = c.metrics;
    return { version: c.version, parentVersion: c.parentVersion, referenceVersion: c.referenceVersion, round: c.round, sha256: c.sha256, metrics };
  };
  const comparison = compareKeyed('checkpoints', checkpointsTopic, recorded, rederived, comparable);
  return recordedCheckpoint ? withCheckpointFile(comparison, recordedCheckpoint, () => dirOf(versions.produces)) : comparison;
}

function keyed<T>(values: T[], keyOf: (v: T) => string): Map<string, T> {
  const map = new Map<string, T>();
  // a key recorded twice (it should not be): the first stands, as a stage reading the topic would see first
  for (const v of values) if (!map.has(keyOf(v))) map.set(keyOf(v), v);
  return map;
}

/**
 * Compares recorded and re-derived records by key. Re-derived records go through the topic's codec
 * first (validation + the wire's representation), so both sides are what the topic would hold.
 * A re-derivation that failed is a string (why), reported as the re-derived value.
 */
function compareKeyed<T>(
  topic: string,
  contract: TopicContract<T>,
  recorded: Map<string, T>,
  rederived: Map<string, T | string>,
  view: (v: T) => unknown = (v) => v,
): Comparison {
  const keys = [...new Set([...recorded.keys(), ...rederived.keys()])].sort(cmpKey);
  let differing = 0;
  let first: StageDifference | null = null;
  for (const key of keys) {
    const r = recorded.get(key);
    let d = rederived.get(key);
    let diff: { path: string; recorded: unknown; rederived: unknown } | null;
    if (typeof d !== 'string' && d !== undefined) {
      try {
        d = contract.decode(contract.encode(d));
      } catch (err) {
        d = `the re-derived record fails the ${topic} contract: ${(err as Error).message}`;
      }
    }
    if (r === undefined) diff = { path: '', recorded: null, rederived: typeof d === 'string' ? d : 'a record the recording does not have' };
    else if (d === undefined) diff = { path: '', recorded: 'a record', rederived: 'not re-derived (its input is not recorded, or was dropped)' };
    else if (typeof d === 'string') diff = { path: '', recorded: 'a record', rederived: d };
    else diff = firstDifference(view(r), view(d));
    if (!diff) continue;
    differing++;
    first ??= { key, path: diff.path, recorded: reportValue(diff.recorded), rederived: reportValue(diff.rederived) };
  }
  return { topic, records: keys.length, differing, identical: differing === 0, first };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Keys in natural order: batch keys "1/10" after "1/9". */
function cmpKey(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
