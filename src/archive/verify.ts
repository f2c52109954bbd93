import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { from, lastValueFrom, toArray } from 'rxjs';
import type { TopicContract } from '../../topics/contract.ts';
import type { Checkpoint } from '../../topics/checkpoints.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { TopicBaseName } from '../../topics/registry.ts';
import type { Rejected } from '../../operators/ports.ts';
import { healthEnabled } from '../config/schema.ts';
import { diceRound, type RoundExecutor } from '../service/dice-round.ts';
import { rejectedVersions, samplingVersions, versionsBehind } from '../service/lineage.ts';
import { STAGES } from '../stages/index.ts';
import { roundInputs, type RecordStage, type RoundContext, type RoundStage, type TopicSide } from '../stages/stage.ts';
import type { Logger } from '../util/log.ts';
import { checkpointDir, valuesOf, type Recorded, type RecordedRun, type Relocations } from './replay-recording.ts';
import { firstDifference, reportValue } from './verify-diff.ts';
import { withCheckpointFile } from './verify-files.ts';
import { VERIFY_STAGES, type StageDifference, type StageVerdict, type VerifyReport, type VerifyStage } from './verify-report.ts';

/**
 * `dice replay --verify`: re-derives every stage of every round from that stage's RECORDED inputs
 * and compares the result with the stage's recorded outputs, record by record and field by field:
 *
 *   samples      ← recorded prompts of the round + the recorded policy checkpoint π_θ(t−1)
 *   scored       ← recorded samples + the recorded scoring reference π_ref(t−1)
 *   pairs        ← recorded scored groups + the recorded config (filters, α rule, windows)
 *   batches      ← recorded pairs + recorded offline pairs (+ the training reference for their log-probs)
 *   checkpoints  ← recorded batches, training from the recorded parent weights; compares sha256
 *   health       ← the recorded checkpoint v_t + held-out pairs and probes: re-derives the gate's decision
 *                  (runs with a health stage; each round starts from the recorded lineage's last promoted version)
 *
 * Since every stage starts from the recording, a difference points at the one stage that made it:
 * an altered pairs record shows at pairs (re-derived from scored) and at batches (whose re-derivation
 * now starts from the altered pairs), while checkpoints (trained from the recorded batches) stay identical.
 */

export { VERIFY_STAGES, type StageDifference, type StageVerdict, type VerifyReport, type VerifyStage } from './verify-report.ts';

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
  // a run without a health stage has no health records to compare
  const stages = new Set(options.stages ?? VERIFY_STAGES.filter((s) => s !== 'health' || healthEnabled(run.config)));
  // the recorded gate decisions fix each round's start (a re-derived decision that differs shows at health)
  const rejected = rejectedVersions(run.health.map((h) => h.value));
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
  const workDir = resolve(options.workDir);
  for (const round of rounds) {
    const executor = new VerifyExecutor(run, round, stages, rejected);
    const batches = valuesOf(run.batches, round);
    mkdirSync(workDir, { recursive: true });
    await diceRound(
      {
        round,
        config: run.config,
        dirOf,
        runId: batches[0]?.runId ?? run.namespace ?? 'run',
        roundPrompts: roundPromptsOf(run, round),
        offline: run.offline.map((o) => o.value),
        rejected,
        train: { checkpointDir: join(workDir, `v${round}`) },
      },
      executor,
    );
    for (const stage of VERIFY_STAGES) {
      if (!stages.has(stage)) continue;
      const verdict: StageVerdict = { round, stage, ...executor.verdict(stage) };
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

type Comparison = Pick<StageVerdict, 'topic' | 'records' | 'differing' | 'identical' | 'first' | 'seconds'>;

/**
 * The verify executor: each stage of Algorithm 1 (diceRound) takes the round's RECORDED inputs,
 * and its outputs are compared with the recorded outputs (per output topic: samples, scored, …).
 */
class VerifyExecutor implements RoundExecutor {
  private readonly comparisons = new Map<VerifyStage, Comparison>();

  constructor(
    private readonly run: RecordedRun,
    private readonly roundNumber: number,
    private readonly stages: ReadonlySet<VerifyStage>,
    private readonly rejected: ReadonlySet<number>,
  ) {}

  /** A stage's comparison; a stage diceRound did not run (a round without prompts) compares its recorded outputs with none. */
  verdict(stage: VerifyStage): Comparison {
    const output = STAGES.find((s) => s.output.topic === stage)!.output as TopicSide<unknown>;
    return this.comparisons.get(stage) ?? { ...compareKeyed(stage, output.contract, this.recordedOutputs(stage, output.key), new Map()), seconds: 0 };
  }

  private recordedInputs<T>(topic: TopicBaseName): T[] {
    if (topic === 'checkpoints') return [...this.run.checkpoints.values()] as T[];
    const lists: Partial<Record<TopicBaseName, Recorded<unknown>[]>> = { prompts: this.run.prompts, samples: this.run.samples, scored: this.run.scored, pairs: this.run.pairs, batches: this.run.batches, health: this.run.health };
    return (lists[topic] ?? []).map((r) => r.value as T);
  }

  private recordedOutputs<T>(topic: VerifyStage, keyOf: (v: T) => string): Map<string, T> {
    if (topic === 'checkpoints') {
      const c = this.run.checkpoints.get(this.roundNumber);
      return new Map(c ? [[keyOf(c as T), c as T]] : []);
    }
    return keyed(this.recordedInputs<T & { round: number }>(topic).filter((v) => v.round === this.roundNumber), keyOf);
  }

  async records<In, Out, E extends { close(): Promise<void> }>(stage: RecordStage<In, Out, E>, ctx: RoundContext): Promise<void> {
    const topic = stage.output.topic as VerifyStage;
    if (!this.stages.has(topic)) return;
    const t0 = performance.now();
    const recorded = this.recordedOutputs(topic, stage.output.key);
    const behind = (v: number) => versionsBehind(v, ctx.versions.policy, this.rejected);
    const inputs = this.recordedInputs<In>(stage.input.topic).filter((v) => stage.inRound(v, ctx) && !stage.isStale?.(v, behind, ctx.config));
    // With bounded staleness (dice serve) a round's groups come from several policy versions: each
    // input is re-derived under the version its recorded output says made it (the round's own policy
    // when nothing was recorded), with that version's engines — as the serving roles did.
    const byVersion = new Map<number, In[]>();
    for (const input of inputs) {
      const out = recorded.get(stage.input.key(input));
      const version = out === undefined ? ctx.versions.policy : stage.madeBy(out);
      byVersion.set(version, [...(byVersion.get(version) ?? []), input]);
    }
    const rederived = new Map<string, Out | string>();
    for (const [version, some] of byVersion) {
      // engine batches are cut from this version's prompts only (a batch never mixes versions)
      const keys = new Set(some.map(stage.input.key));
      const vctx: RoundContext =
        byVersion.size === 1 && version === ctx.versions.policy
          ? ctx
          : { ...ctx, versions: samplingVersions(ctx.versions.round, version, ctx.config.method, this.rejected), roundPromptOrder: ctx.roundPromptOrder.filter((p) => keys.has(p.promptId)) };
      const engine = await stage.openEngine(vctx.dirOf(stage.engineVersion(vctx.versions)), vctx.config);
      try {
        for (const out of await lastValueFrom(from(some).pipe(stage.operator(engine, vctx), toArray()))) {
          if (isRejected(out)) rederived.set(out.key, `the ${stage.name} stage refused it: ${out.error}`);
          else rederived.set(stage.output.key(out), out);
        }
      } finally {
        await engine.close();
      }
    }
    this.comparisons.set(topic, { ...compareKeyed(topic, stage.output.contract, recorded, rederived), seconds: (performance.now() - t0) / 1000 });
  }

  async round<In, Out, D, R>(stage: RoundStage<In, Out, D, R>, deps: D, ctx: RoundContext): Promise<R | null> {
    const topic = stage.output.topic as VerifyStage;
    if (!this.stages.has(topic)) return null;
    const t0 = performance.now();
    const inputs = roundInputs(stage, this.recordedInputs<In>(stage.input.topic), ctx);
    const recorded = this.recordedOutputs(topic, stage.output.key);
    // nothing recorded on either side: nothing to re-derive (e.g. a round the run never reached)
    const result = inputs.length > 0 || recorded.size > 0 ? await stage.derive(inputs, deps, ctx) : null;
    const rederived = keyed(result === null ? [] : stage.outputs(result), stage.output.key);
    let comparison = compareKeyed(topic, stage.output.contract, recorded, rederived, topic === 'checkpoints' ? comparableCheckpoint : undefined);
    // the recorded final checkpoint's weights must still be the recorded ones
    const recordedCheckpoint = topic === 'checkpoints' ? this.run.checkpoints.get(ctx.versions.produces) : undefined;
    if (recordedCheckpoint) comparison = withCheckpointFile(comparison, recordedCheckpoint, () => ctx.dirOf(ctx.versions.produces));
    this.comparisons.set(topic, { ...comparison, seconds: (performance.now() - t0) / 1000 });
    return result;
  }
}

/**
 * The round's prompts (those with recorded samples or scored groups) in the order the run took them,
 * for the sample stage's engine batches: the run's 'prompts' marker of the round, else (runs recorded
 * before it) the recorded prompts' order, which is the run's only with a one-partition prompts topic.
 */
function roundPromptsOf(run: RecordedRun, round: number): PromptRecord[] {
  const groups = new Map([...valuesOf(run.samples, round), ...valuesOf(run.scored, round)].map((g) => [g.promptId, g]));
  const order = run.promptOrders.get(round);
  const rank = new Map((order ?? []).map((id, i) => [id, i]));
  const unranked = order ? order.length : 0;
  const recorded = run.prompts
    .map((p, i) => ({ p: p.value, at: rank.get(p.value.promptId) ?? unranked + i }))
    .filter(({ p }) => groups.has(p.promptId))
    .sort((a, b) => a.at - b.at)
    .map(({ p }) => p);
  // a group whose prompt record is missing still belongs to the round (after the recorded ones)
  const known = new Set(recorded.map((p) => p.promptId));
  const missing = [...groups.values()].filter((g) => !known.has(g.promptId)).map((g): PromptRecord => ({ promptId: g.promptId, text: g.prompt, messages: null, source: 'recorded group', arrivalTime: 0 }));
  return [...recorded, ...missing];
}

/** Where the weights went and when, and how long training took, are not part of what a replay reproduces. */
function comparableCheckpoint(v: unknown): unknown {
  const c = v as Checkpoint;
  const { trainSeconds: _s, ...metrics } = c.metrics;
  return { version: c.version, parentVersion: c.parentVersion, referenceVersion: c.referenceVersion, round: c.round, sha256: c.sha256, metrics };
}

function isRejected(v: unknown): v is Rejected {
  return typeof v === 'object' && v !== null && (v as Rejected).kind === 'rejected';
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
): Omit<Comparison, 'seconds'> {
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

/** Keys in natural order: batch keys "1/10" after "1/9". */
function cmpKey(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}
