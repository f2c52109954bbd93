import { filter, type OperatorFunction } from 'rxjs';
import type { Bus, TopicRecords } from '../../topics/bus.ts';
import { doneMarker, markersTopic } from '../../topics/markers.ts';
import { topicName, type TopicBaseName } from '../../topics/registry.ts';
import type { Rejected } from '../../operators/ports.ts';
import type { RecordStage, RoundContext, RoundStage, StageEvent, TopicSide } from '../stages/stage.ts';
import type { StageName } from '../stages/metric-events.ts';
import { roundInputs, stageEvent } from '../stages/stage.ts';
import type { Logger } from '../util/log.ts';
import { Progress } from '../util/log.ts';
import type { RoundExecutor } from './dice-round.ts';
import { versionsBehind } from './lineage.ts';
import type { MetricsEmitter } from './metrics.ts';
import { commitAll, readRemaining, runPerRecordStage, type PerRecordStage, type StageInput } from './stage-runner.ts';

/**
 * The batch executor (`dice run`): each stage reads its input topic to the end in its own consumer
 * group (`<namespace>.<stage>.r<t>`) and writes its outputs together with the commit of its inputs;
 * a whole-round stage writes its completion marker in the same unit, so a restarted run skips it.
 */
export class BatchExecutor implements RoundExecutor {
  /** Wall seconds per stage, and the part of it spent in the engines (loading, sampling, scoring, training). */
  readonly seconds: Record<string, number> = {};
  readonly engineSeconds: Record<string, number> = {};

  constructor(
    private readonly o: {
      bus: Bus;
      namespace: string;
      round: number;
      metrics: MetricsEmitter;
      log: Logger;
      /** Whole-round stages of this round already done (their completion markers). */
      done: ReadonlySet<string>;
      afterStage?: (round: number, stage: string) => void | Promise<void>;
    },
  ) {}

  private T = (base: TopicBaseName) => topicName(this.o.namespace, base);
  private group = (stage: string) => `${this.o.namespace}.${stage}.r${this.o.round}`;

  /** Times engine work of a stage (the rest of its wall time is the bus, encoding and orchestration). */
  clock<R>(stage: string, work: Promise<R>): Promise<R> {
    const t0 = performance.now();
    return work.finally(() => {
      this.engineSeconds[stage] = (this.engineSeconds[stage] ?? 0) + (performance.now() - t0) / 1000;
    });
  }

  private async timed<R>(stage: StageName, work: () => Promise<R>): Promise<R> {
    const t0 = performance.now();
    const result = await work();
    const seconds = (this.seconds[stage] = (performance.now() - t0) / 1000);
    const engineSeconds = this.engineSeconds[stage] ?? 0;
    this.emit(stageEvent(`${stage}/stage-time`, { seconds, engineSeconds, overheadSeconds: seconds - engineSeconds }));
    await this.o.afterStage?.(this.o.round, stage);
    return result;
  }

  emit = (event: StageEvent) => this.o.metrics.stageEvent(event, this.o.round);

  async records<In, Out, E extends { close(): Promise<void> }>(stage: RecordStage<In, Out, E>, ctx: RoundContext): Promise<void> {
    const log = this.o.log.child({ round: this.o.round });
    await this.timed(stage.name, async () => {
      const opened = await this.clock(stage.name, stage.openEngine(ctx.dirOf(stage.engineVersion(ctx.versions)), ctx.config));
      const engine = clockedEngine(opened, (w) => this.clock(stage.name, w));
      const progress = new Progress(`${stage.name} r${this.o.round}`, ctx.roundPrompts.size);
      let stale = 0;
      try {
        const counts = await runPerRecordStage(
          recordStageRun(stage, {
            bus: this.o.bus,
            groupId: this.group(stage.name),
            input: stageInput(stage.input, this.T),
            outputTopic: this.T(stage.output.topic),
            untilEnd: true,
            accept: (v) => stage.inRound(v, ctx),
            operator: (drop) => (in$) =>
              in$.pipe(
                // the round's own samples are never behind; rejected versions are not known here, so every older one counts
                dropStale(stage, (v) => versionsBehind(v, ctx.versions.policy, NO_REJECTIONS), ctx, (v) => {
                  stale++;
                  const event = stage.staleEvent?.(v);
                  if (event) this.emit(event.event);
                  drop(stage.inFlightKey(v));
                }),
                stage.operator(engine, ctx),
              ),
            onOutput: () => progress.tick(1),
            emit: this.emit,
            onRejected: (r) => log.warn(`${stage.input.topic} record rejected by the ${stage.name} stage (→ dead-letter)`, { key: r.key, error: r.error }),
          }),
        );
        log.info(stage.doneMessage, { ...counts, stale });
      } finally {
        progress.finish();
        await opened.close();
      }
    });
  }

  async round<In, Out, D, R>(stage: RoundStage<In, Out, D, R>, deps: D, ctx: RoundContext): Promise<R | null> {
    const log = this.o.log.child({ round: this.o.round });
    if (this.o.done.has(stage.name)) {
      log.info(`${stage.name} stage already done`);
      return null;
    }
    return this.timed(stage.name, async () => {
      const group = this.group(stage.name);
      const consumed = await readRemaining(this.o.bus, group, stageInput(stage.input, this.T));
      const result = await stage.derive(roundInputs(stage, consumed.map((d) => d.value), ctx), deps, ctx);
      const outputs = [
        { topic: this.T(stage.output.topic), records: stage.outputs(result).map((v) => encoded(stage.output, v)) },
        ...alsoOutputs(stage, result, this.T),
        { topic: this.T('markers'), records: [encoded({ contract: markersTopic, key: (m) => m.stage }, doneMarker(stage.name, this.o.round))] },
      ];
      await commitAll(this.o.bus, group, outputs, consumed);
      for (const e of stage.project(result, ctx)) this.emit(e);
      for (const line of stage.logLines(result)) log.info(line.msg, line.fields);
      return result;
    });
  }
}

/** A stage's records on other topics than its output (RoundStage.also), encoded for the same unit of work. */
export function alsoOutputs<R>(stage: { also?: RoundStage<unknown, unknown, unknown, R>['also'] }, result: R, T: (base: TopicBaseName) => string): TopicRecords[] {
  return (stage.also ?? []).map((a) => ({ topic: T(a.side.topic), records: a.values(result).map((v) => encoded(a.side, v)) }));
}

export function stageInput<T>(side: TopicSide<T>, T: (base: TopicBaseName) => string): StageInput<T> {
  return { topic: T(side.topic), contract: side.contract, deadLetterTopic: T('dead-letter') };
}

export function encoded<T>(side: Pick<TopicSide<T>, 'contract' | 'key'>, value: T): { key: string; value: Uint8Array } {
  return { key: side.key(value), value: side.contract.encode(value) };
}

/**
 * Inputs made by a policy too far behind the current one (the stage's staleness rule; `behind(v)`:
 * how many versions v is behind it) go to `onStale` instead of the engine.
 */
export function dropStale<In, Out, E extends { close(): Promise<void> }>(
  stage: RecordStage<In, Out, E>,
  behind: (sampledBy: number) => number,
  ctx: Pick<RoundContext, 'config'>,
  onStale: (v: In) => void,
): OperatorFunction<In, In> {
  return filter((v) => {
    if (!stage.isStale?.(v, behind, ctx.config)) return true;
    onStale(v);
    return false;
  });
}

/**
 * A per-record stage as the stage runner takes it: outputs keyed and encoded by the descriptor,
 * each answered input matched by the descriptor's key, the descriptor's projection emitted per output.
 */
export function recordStageRun<In, Out, E extends { close(): Promise<void> }>(
  stage: RecordStage<In, Out, E>,
  o: {
    bus: Bus;
    groupId: string;
    input: StageInput<In>;
    outputTopic: string;
    untilEnd: boolean;
    accept?: (v: In) => boolean;
    operator: (drop: (key: string) => void) => OperatorFunction<In, Out | Rejected>;
    emit: (e: StageEvent, round: number) => void;
    onOutput?: (v: Out) => void;
    onRejected?: (r: Rejected) => void;
    stop$?: PerRecordStage<In, Out>['stop$'];
  },
): PerRecordStage<In, Out> {
  const project = stage.projection();
  return {
    bus: o.bus,
    groupId: o.groupId,
    input: o.input,
    accept: o.accept,
    keyOfInput: stage.inFlightKey,
    keyOfOutput: stage.answers,
    operator: o.operator,
    outputs: (v) => [{ topic: o.outputTopic, records: [encoded(stage.output, v)] }],
    untilEnd: o.untilEnd,
    stop$: o.stop$,
    onOutput: (v, progress) => {
      o.onOutput?.(v);
      o.emit(project(v, progress), stage.roundOf(v));
    },
    onRejected: o.onRejected,
  };
}

const NO_REJECTIONS: ReadonlySet<number> = new Set();

/** The engine with each of its async methods timed by `clock`. */
function clockedEngine<E extends object>(engine: E, clock: <R>(work: Promise<R>) => Promise<R>): E {
  return new Proxy(engine, {
    get(target, property, receiver) {
      const value = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const out = value.apply(target, args);
        return out instanceof Promise ? clock(out) : out;
      };
    },
  });
}
