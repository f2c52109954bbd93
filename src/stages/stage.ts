import type { OperatorFunction } from 'rxjs';
import type { TopicContract } from '../../topics/contract.ts';
import type { BatchOf } from '../../operators/engine-batches.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { Rejected } from '../../operators/ports.ts';
import type { TopicBaseName } from '../../topics/registry.ts';
import type { RunConfig } from '../config/schema.ts';
import { readChatTemplate } from '../model/load.ts';
import type { RoundVersions } from '../service/lineage.ts';
import type { AllPipelineEvents, PipelineEventName, StageName } from './metric-events.ts';

/**
 * A stage of Algorithm 1, defined once (DESIGN.md "Stages and executors"): where its records come
 * from and go, what makes its engine batches deterministic, the operator that does its work, and
 * the typed metrics it emits. Executors (`dice run`, `dice serve`, `dice replay --verify`) run
 * these definitions; a rule that matters for reproducibility lives here, not in an executor.
 */

/** One side of a stage: a topic (base name), its contract, and the record key on that topic. */
export interface TopicSide<T> {
  topic: TopicBaseName;
  contract: TopicContract<T>;
  key: (value: T) => string;
}

/** What every stage knows of the round it works in. */
export interface RoundContext {
  config: RunConfig;
  versions: RoundVersions;
  /** Model directory of a lineage version (π_ref(0) is −1). */
  dirOf: (version: number) => string;
  /** Recorded on batches (the run's namespace). */
  runId: string;
  /** The prompts of this round (by id), and in the round's fixed order (what engine batches are cut from). */
  roundPrompts: ReadonlySet<string>;
  roundPromptOrder: readonly PromptRecord[];
  /** Where a stage's events go while it works (e.g. each training step); absent: nowhere (verify). */
  emit?: (event: StageEvent) => void;
}

/** A typed metrics event of a stage, ready for the emitter. */
export interface StageEvent<K extends PipelineEventName = PipelineEventName> {
  name: K;
  fields: AllPipelineEvents[K];
}

export function stageEvent<K extends PipelineEventName>(name: K, fields: AllPipelineEvents[K]): StageEvent<K> {
  return { name, fields };
}

/** Every stage names itself, its input and output, and the metrics events it can emit. */
export interface StageBase<In, Out, E extends PipelineEventName> {
  name: StageName;
  input: TopicSide<In>;
  output: TopicSide<Out>;
  /** The events this stage's projections make (checked against what the monitor page reads). */
  emits: readonly E[];
}

/**
 * Whether prompts are rendered through the policy's chat template: the config allows it and the
 * model has one. One decision for sampled prompts and offline pairs, so both see the same context.
 */
export function usesChatTemplate(config: RunConfig, policyDir: string): boolean {
  return config.sampling.chatTemplate && readChatTemplate(policyDir) !== null;
}

/** The staleness rule of the stages (score, train): more than `serve.maxStaleness` versions behind (0: any) is too stale. */
export function tooStale(config: RunConfig, versionsBehind: number): boolean {
  return config.strictOnPolicy && versionsBehind > config.serve.maxStaleness;
}

export function byKey<T>(keyOf: (v: T) => string): (a: T, b: T) => number {
  return (a, b) => {
    const x = keyOf(a);
    const y = keyOf(b);
    return x < y ? -1 : x > y ? 1 : 0;
  };
}

/** What a stage's metrics projection knows of the stage's progress when it answers a record. */
export interface ProjectionProgress {
  /** Input records not yet committed by the stage's group (0 where there is no group: verify). */
  lag: number;
}

/**
 * A stage whose outputs each answer one input record (sample, score). Its engine runs one model of
 * the lineage; `operator` streams inputs to it in the engine batches of `grouping`; `call` is one
 * engine call over a batch.
 */
export interface RecordStage<In, Out, Engine extends { close(): Promise<void> }, E extends PipelineEventName = PipelineEventName> extends StageBase<In, Out, E> {
  kind: 'per-record';
  /** Key of an input while it is in flight; `answers(output)` names the input an output answers. */
  inFlightKey: (input: In) => string;
  answers: (output: Out) => string;
  /** The round an output belongs to (its metrics event's round). */
  roundOf: (output: Out) => number;
  /** The log line when the stage has answered its inputs (with the counts). */
  doneMessage: string;
  /**
   * The grouping rule: the engine batch each input is computed in, by its in-flight key (undefined:
   * alone). It may depend on the round's record list, never on timing: the batch composition changes
   * float rounding, so this rule is what makes a stage's outputs repeat bit for bit.
   */
  grouping: (ctx: RoundContext) => BatchOf<In>;
  /** Inputs of this round (the others are committed without output). */
  inRound: (input: In, ctx: RoundContext) => boolean;
  /**
   * Strictly on-policy up to the staleness bound: an input made by a policy more versions behind the
   * current one than `serve.maxStaleness` (`behind(v)`: how far version v is behind) is dropped
   * (committed, counted). See `tooStale`.
   */
  isStale?: (input: In, behind: (sampledBy: number) => number, config: RunConfig) => boolean;
  /** The policy version that made an output (its group's sampler): with bounded staleness a round mixes versions. */
  madeBy: (output: Out) => number;
  /** The lineage version whose model the stage's engine runs in a round. */
  engineVersion: (versions: RoundVersions) => number;
  openEngine: (modelDir: string, config: RunConfig) => Promise<Engine>;
  operator: (engine: Engine, ctx: RoundContext) => OperatorFunction<In, Out | Rejected>;
  call: (chunk: In[], engine: Engine, ctx: RoundContext) => Promise<Array<Out | Rejected>>;
  /** A fresh projection (it may keep running totals, e.g. tokens per second). */
  projection: () => (output: Out, progress: ProjectionProgress) => StageEvent<E>;
  /** The event of a dropped stale input, and its round. */
  staleEvent?: (input: In) => { event: StageEvent<E>; round: number };
}

/**
 * A stage that takes a round's inputs at once (α window + pairs, replay mix, train): the round's
 * input records in `order` (never arrival order), `derive` over them, `outputs` to its topic.
 */
export interface RoundStage<In, Out, Deps, Result, E extends PipelineEventName = PipelineEventName> extends StageBase<In, Out, E> {
  kind: 'whole-round';
  inRound: (input: In, ctx: RoundContext) => boolean;
  order: (a: In, b: In) => number;
  derive: (inputs: In[], deps: Deps, ctx: RoundContext) => Promise<Result>;
  outputs: (result: Result) => Out[];
  /** Records the stage also writes to other topics, in the same unit as its outputs (e.g. health: v_t with its gate decision on checkpoints). */
  also?: ReadonlyArray<AlsoOutput<Result>>;
  project: (result: Result, ctx: RoundContext) => StageEvent<E>[];
  /** What the executor logs when the stage is done (the e2e tests and users read these lines). */
  logLines: (result: Result) => Array<{ msg: string; fields: Record<string, unknown> }>;
}

export interface AlsoOutput<Result, T = any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  side: TopicSide<T>;
  values: (result: Result) => T[];
}

/** The round's records of a stage's input, in the stage's order. */
export function roundInputs<In>(stage: Pick<RoundStage<In, unknown, never, unknown>, 'inRound' | 'order'>, values: readonly In[], ctx: RoundContext): In[] {
  return values.filter((v) => stage.inRound(v, ctx)).sort(stage.order);
}
