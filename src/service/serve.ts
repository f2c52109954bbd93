import { join, resolve } from 'node:path';
import { BehaviorSubject, concatMap, filter, firstValueFrom, from, lastValueFrom, map, Observable, Subject, takeUntil } from 'rxjs';
import type { Bus } from '../../topics/bus.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { decodeOrDeadLetter, type Decoded } from '../../topics/decode-or-dead-letter.ts';
import { offlineTopic } from '../../topics/offline.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { switchEngines, type ActiveEngine } from '../../operators/checkpoint.ts';
import { versionLabel } from '../../operators/train.ts';
import type { RunConfig } from '../config/schema.ts';
import { sampleStage, scoreStage } from '../stages/index.ts';
import { stageEvent, type RecordStage, type RoundContext } from '../stages/stage.ts';
import type { Logger } from '../util/log.ts';
import { dropStale, recordStageRun, stageInput } from './batch-executor.ts';
import { diceRound } from './dice-round.ts';
import { ingestFile, offlineDefaults } from './ingest.ts';
import { publishInitialLineage, roundVersions } from './lineage.ts';
import type { MetricsEmitter } from './metrics.ts';
import { ServiceRoundExecutor } from './service-executor.ts';
import { commitAll, readWholeTopic, runPerRecordStage, type StageCounts } from './stage-runner.ts';

/**
 * `dice serve`: the always-on service. Prompts produced at any time are sampled by the current
 * policy; a round starts whenever N fresh groups of the current version have been scored; its
 * checkpoint switches samplers and scorers to the new policy (reference: the previous one).
 *
 * Roles split the work over processes sharing one bus (Kafka for several machines):
 *   sampler  prompts → samples, N prompts per policy version per process (the rest wait their turn)
 *   scorer   samples → scored, strictly on-policy (groups of an older version are dropped, counted)
 *   trainer  scored → α window → pairs → replay mix → batches → DPO → checkpoint, one transaction
 * Samplers and scorers are consumer-group members over partitioned topics: each prompt is sampled
 * once between them. SIGTERM (the `stop` signal) stops taking records, finishes and commits what was
 * taken; an unfinished round stays uncommitted and is redone after a restart.
 */

export type ServeRole = 'sampler' | 'scorer' | 'trainer';

export interface ServeInputs {
  bus: Bus;
  namespace: string | undefined;
  config: RunConfig;
  roles: ReadonlySet<ServeRole>;
  /** π_θ(0) and π_ref(0): needed by the first process of a namespace (they go on the checkpoints topic). */
  policyDir?: string;
  refDir?: string;
  offlineFile?: string;
  outDir: string;
  log: Logger;
  metrics: MetricsEmitter;
  stop: AbortSignal;
}

export async function serveDice(inputs: ServeInputs): Promise<void> {
  const { bus, namespace, config, log } = inputs;
  const T = (base: TopicBaseName) => topicName(namespace, base);
  const N = config.promptsPerRound;
  if (!(N > 0)) throw new Error('dice serve needs promptsPerRound > 0 (--prompts-per-round N): a round starts whenever N fresh prompts are scored');
  await createPipelineTopics(bus, namespace);
  if (inputs.policyDir || inputs.refDir) {
    if (!inputs.policyDir || !inputs.refDir) throw new Error('give both --policy and --ref (or neither, to join a namespace that has them)');
    await publishInitialLineage(bus, T('checkpoints'), inputs.policyDir, inputs.refDir);
  }
  if (inputs.offlineFile) await ingestFile(bus, T('offline'), T('dead-letter'), offlineTopic, inputs.offlineFile, offlineDefaults);

  const stop$ = new Observable<void>((s) => {
    if (inputs.stop.aborted) s.next();
    const onAbort = () => s.next();
    inputs.stop.addEventListener('abort', onAbort);
    return () => inputs.stop.removeEventListener('abort', onAbort);
  });
  const lineage = new CheckpointWatcher(bus, T('checkpoints'));
  await lineage.start();
  try {
    if (!lineage.has(0)) {
      log.info('waiting for v0 on the checkpoints topic (start one process with --policy and --ref)');
      await lineage.waitFor((cps) => cps.has(0), inputs.stop);
    }
    const roles = [...inputs.roles];
    log.info('serving', { roles, namespace: namespace ?? '', promptsPerRound: N, policy: versionLabel(lineage.latest().version) });
    await Promise.all(
      roles.map((role) => {
        const ctx: RoleContext = { ...inputs, T, N, lineage, stop$ };
        return role === 'sampler' ? samplerRole(ctx) : role === 'scorer' ? scorerRole(ctx) : trainerRole(ctx);
      }),
    );
  } finally {
    lineage.stop();
    await inputs.metrics.flush();
  }
}

interface RoleContext extends ServeInputs {
  T: (base: TopicBaseName) => string;
  N: number;
  lineage: CheckpointWatcher;
  stop$: Observable<void>;
}

/** The checkpoints topic as live state: every version published so far, and the latest. */
class CheckpointWatcher {
  private readonly versions = new Map<number, Checkpoint>();
  readonly changes = new BehaviorSubject<Map<number, Checkpoint>>(this.versions);
  private subscription: { unsubscribe(): void } | null = null;

  constructor(
    private readonly bus: Bus,
    private readonly topic: string,
  ) {}

  async start(): Promise<void> {
    for (const c of await readWholeTopic(this.bus, this.topic, checkpointsTopic)) this.versions.set(c.version, c);
    const groupId = `watch-checkpoints-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`;
    this.subscription = this.bus.consume({ groupId, topics: [this.topic], from: { kind: 'beginning' } }).subscribe((record) => {
      try {
        const c = checkpointsTopic.decode(record.value);
        this.versions.set(c.version, c);
        this.changes.next(this.versions);
      } catch {
        // malformed checkpoint records are not lineage
      }
      void record.commit();
    });
  }

  has(version: number): boolean {
    return this.versions.has(version);
  }

  get(version: number): Checkpoint {
    const c = this.versions.get(version);
    if (!c) throw new Error(`checkpoint v${version} is not on ${this.topic}`);
    return c;
  }

  latest(): Checkpoint {
    let best: Checkpoint | undefined;
    for (const c of this.versions.values()) if (!best || c.version > best.version) best = c;
    if (!best) throw new Error(`no checkpoint on ${this.topic}`);
    return best;
  }

  /** Resolves when the predicate holds (or rejects when stopped). */
  async waitFor(predicate: (versions: Map<number, Checkpoint>) => boolean, stop: AbortSignal): Promise<void> {
    if (predicate(this.versions)) return;
    await new Promise<void>((resolvePromise, reject) => {
      const sub = this.changes.pipe(filter(predicate)).subscribe(() => {
        sub.unsubscribe();
        stop.removeEventListener('abort', onStop);
        resolvePromise();
      });
      const onStop = () => {
        sub.unsubscribe();
        reject(new StoppedError());
      };
      stop.addEventListener('abort', onStop, { once: true });
    });
  }

  stop(): void {
    this.subscription?.unsubscribe();
  }
}

class StoppedError extends Error {
  constructor() {
    super('stopped');
  }
}

/** Pull-style access to the checkpoint operator: the engine of a version, opened on first request, replacing the previous one. */
function engineSwitch<E extends { close(): Promise<void> }>(open: (version: number) => Promise<E>): { get(version: number): Promise<E>; close(): Promise<void> } {
  const requests = new Subject<number>();
  const active = new BehaviorSubject<ActiveEngine<E> | null>(null);
  const finished = new Promise<void>((resolvePromise, reject) => {
    requests.pipe(switchEngines(open)).subscribe({ next: (a) => active.next(a), error: reject, complete: resolvePromise });
  });
  finished.catch(() => undefined); // surfaced through get()/close()
  return {
    get(version) {
      requests.next(version);
      return Promise.race([
        firstValueFrom(active.pipe(filter((a): a is ActiveEngine<E> => a?.version === version), map((a) => a.engine))),
        finished.then(() => Promise.reject(new Error(`engine for version ${version}: closed`))),
      ]);
    },
    close() {
      requests.complete();
      return finished;
    },
  };
}

async function samplerRole(ctx: RoleContext): Promise<void> {
  const { lineage, N } = ctx;
  const taken = new Map<number, number>();
  /** A slot for one prompt under the latest version; waits for the next checkpoint once this process took N. */
  const slot = async (): Promise<number | null> => {
    for (;;) {
      const v = lineage.latest().version;
      if ((taken.get(v) ?? 0) < N) {
        taken.set(v, (taken.get(v) ?? 0) + 1);
        return v;
      }
      try {
        await lineage.waitFor(() => lineage.latest().version > v, ctx.stop);
      } catch (err) {
        if (err instanceof StoppedError) return null;
        throw err;
      }
    }
  };
  const counts = await serveRecordStage(ctx, sampleStage, slot);
  ctx.log.info('sampler stopped', { ...counts });
}

async function scorerRole(ctx: RoleContext): Promise<void> {
  const counts = await serveRecordStage(ctx, scoreStage, async (g) => g.policyVersion);
  ctx.log.info('scorer stopped', { ...counts });
}

/**
 * A per-record stage as a service: every input of its topic, forever, each under a policy version
 * (`versionOf`: the sampler's slot, or the version that sampled a group), on the engine of that
 * version's round (switched when the version moves on), in the chunks of the stage's grouping rule.
 */
async function serveRecordStage<In, Out, E extends { close(): Promise<void> }>(
  ctx: RoleContext,
  stage: RecordStage<In, Out, E>,
  versionOf: (input: In) => Promise<number | null>,
): Promise<StageCounts> {
  const { bus, config, lineage, T, metrics } = ctx;
  const dirOf = (v: number) => lineage.get(v).location;
  const roundOf = (policy: number): RoundContext => ({ config, versions: roundVersions(policy + 1, config.method), dirOf, runId: ctx.namespace ?? 'dice', roundPrompts: new Set(), roundPromptOrder: [] });
  const engines = engineSwitch((v) => stage.openEngine(dirOf(v), config));
  try {
    return await runPerRecordStage(
      recordStageRun(stage, {
        bus,
        groupId: `${ctx.namespace ?? 'dice'}.serve.${stage.name}`,
        input: stageInput(stage.input, T),
        outputTopic: T(stage.output.topic),
        untilEnd: false,
        stop$: ctx.stop$,
        operator: (drop) => (in$) =>
          in$.pipe(
            dropStale(stage, () => lineage.latest().version, ctx, (v) => {
              const stale = stage.staleEvent?.(v);
              if (stale) metrics.stageEvent(stale.event, stale.round);
              drop(stage.inFlightKey(v));
            }),
            concatMap(async (input) => ({ input, version: await versionOf(input) })),
            filter((x): x is { input: In; version: number } => x.version !== null),
            // dice serve has no round prompt list for the grouping rule to cut batches from (its
            // rounds form as groups arrive), so each input is computed alone: the rule's answer for an
            // empty round, and reproducible across restarts.
            concatMap(async ({ input, version }) => {
              const round = roundOf(version);
              const engine = await engines.get(stage.engineVersion(round.versions));
              return stage.call([input], engine, round);
            }),
            concatMap((outputs) => from(outputs)),
          ),
        emit: (e, round) => metrics.stageEvent(e, round),
        onRejected: (r) => ctx.log.warn(`${stage.input.topic} record rejected by the ${stage.name} stage (→ dead-letter)`, { key: r.key, error: r.error }),
      }),
    );
  } finally {
    await engines.close();
  }
}

async function trainerRole(ctx: RoleContext): Promise<void> {
  const { bus, config, lineage, T, N, log } = ctx;
  const groupId = `${ctx.namespace ?? 'dice'}.serve.train`;
  const waiting = new Map<number, Decoded<ScoredGroup>[]>();
  const run$ = bus.consume({ groupId, topics: [T('scored')], maxInFlight: Math.max(1000, 4 * N) }).pipe(
    takeUntil(ctx.stop$),
    decodeOrDeadLetter(bus, scoredTopic, { groupId, deadLetterTopic: T('dead-letter') }),
    concatMap(async (d) => {
      const current = lineage.latest().version;
      if (config.strictOnPolicy && d.value.policyVersion < current) {
        ctx.metrics.stageEvent(stageEvent('train/stale-dropped', { promptId: d.value.promptId, policyVersion: d.value.policyVersion }), d.value.round);
        await commitAll(bus, groupId, [], [d]);
        return;
      }
      const list = waiting.get(d.value.policyVersion) ?? [];
      list.push(d);
      waiting.set(d.value.policyVersion, list);
      if (list.length < N || d.value.policyVersion !== current) return;
      await serveRound(ctx, current + 1, list.splice(0, N), groupId);
    }),
  );
  await lastValueFrom(run$, { defaultValue: undefined });
  log.info('trainer stopped', { waitingGroups: [...waiting.values()].reduce((s, l) => s + l.length, 0) });
}

/** The prompt a scored group answers (the trainer's round lists its groups' prompts). */
function promptOf(g: ScoredGroup): PromptRecord {
  return { promptId: g.promptId, text: g.prompt, messages: null, source: 'scored', arrivalTime: 0 };
}

/** One round inside the trainer: Algorithm 1 from its N scored groups on — committed as one unit. */
async function serveRound(ctx: RoleContext, round: number, consumed: Decoded<ScoredGroup>[], groupId: string): Promise<void> {
  const { bus, config, lineage, T, metrics } = ctx;
  const rlog = ctx.log.child({ round });
  rlog.info('round starts', { policy: versionLabel(round - 1), groups: consumed.length });
  const executor = new ServiceRoundExecutor(consumed.map((d) => d.value), T, (e) => metrics.stageEvent(e, round), rlog);
  const { versions } = await diceRound(
    {
      round,
      config,
      dirOf: (v) => lineage.get(v).location,
      runId: ctx.namespace ?? 'dice',
      roundPrompts: consumed.map((d) => promptOf(d.value)),
      offline: await readWholeTopic(bus, T('offline'), offlineTopic),
      train: { checkpointDir: join(resolve(ctx.outDir), `v${round}`) },
      emit: (e) => metrics.stageEvent(e, round),
    },
    executor,
  );
  await commitAll(bus, groupId, executor.outputs, consumed);
  // the watcher sees the new version on the topic; wait so this process's own roles switch before going on
  await firstValueFrom(lineage.changes.pipe(filter((m) => m.has(versions.produces))));
}
