import { join, resolve } from 'node:path';
import { BehaviorSubject, concatMap, filter, firstValueFrom, from, lastValueFrom, map, merge, Observable, Subject, takeUntil } from 'rxjs';
import type { Bus } from '../../topics/bus.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { decodeOrDeadLetter, type Decoded } from '../../topics/decode-or-dead-letter.ts';
import { offlineTopic } from '../../topics/offline.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { switchEngines, type ActiveEngine } from '../../operators/checkpoint.ts';
import { versionLabel } from '../../operators/train.ts';
import { healthEnabled, type RunConfig } from '../config/schema.ts';
import { sampleStage, scoreStage } from '../stages/index.ts';
import { stageEvent, tooStale, type RecordStage, type RoundContext, type StageEvent } from '../stages/stage.ts';
import type { Logger } from '../util/log.ts';
import { dropStale, recordStageRun, stageInput } from './batch-executor.ts';
import { diceRound } from './dice-round.ts';
import { ingestFile, offlineDefaults } from './ingest.ts';
import { isUsable, publishInitialLineage, REF0_VERSION, rejectedVersions, roundFrom, samplingVersions, versionsBehind } from './lineage.ts';
import type { MetricsEmitter } from './metrics.ts';
import { recordRunMetadata } from './run.ts';
import { ServiceRoundExecutor } from './service-executor.ts';
import { commitAll, readWholeTopic, runPerRecordStage, type StageCounts } from './stage-runner.ts';

/**
 * `dice serve`: the always-on service. Prompts produced at any time are sampled by the current
 * policy; a round starts whenever N fresh groups of the current version have been scored; its
 * checkpoint switches samplers and scorers to the new policy (reference: the previous one).
 *
 * Roles split the work over processes sharing one bus (Kafka for several machines):
 *   sampler  prompts → samples, N prompts per round per process (the rest wait their turn)
 *   scorer   samples → scored, with the reward of the version that sampled each group
 *   trainer  scored → α window → pairs → replay mix → batches → DPO → checkpoint, one transaction
 * Bounded staleness (`serve.maxStaleness` = s): with s = 0 (the paper) rounds are strictly on-policy
 * and samplers wait while a round trains; with s > 0 a sampler on v_{t−1} goes on sampling fresh
 * prompts for rounds t+1..t+s while round t trains (tagged with that round; their staleness is how
 * many versions their sampler is behind the round's policy). Groups more than s versions behind are
 * dropped and counted (scorer: behind the current policy; trainer: behind the round's). When v_t is
 * published a role finishes the group in flight on its old engine and then switches: no group mixes
 * versions (`serve/engine-switch` events time the switch; `serve/role-time` splits each round into
 * busy and waiting per role; `train/staleness` is each round's staleness histogram).
 * Samplers and scorers are consumer-group members over partitioned topics: each prompt is sampled
 * once between them. SIGTERM (the `stop` signal) stops taking records, finishes and commits what was
 * taken; an unfinished round stays uncommitted and is redone after a restart.
 */

export type ServeRole = 'sampler' | 'scorer' | 'trainer';

/** The events the service itself emits (the stages emit the rest). */
export const SERVE_EMITS = ['serve/role-time', 'serve/engine-switch', 'train/stale-dropped', 'train/staleness'] as const;

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
  const lineage = new CheckpointWatcher(bus, T('checkpoints'), healthEnabled(config));
  await lineage.start();
  try {
    if (!lineage.has(0)) {
      log.info('waiting for v0 on the checkpoints topic (start one process with --policy and --ref)');
      await lineage.waitFor((cps) => cps.has(0), inputs.stop);
    }
    // what a replay re-derives the served rounds with (as `dice run` records it; every process of a namespace records the same config)
    const lineageDirs = { policyDir: lineage.get(0).location, refDir: lineage.get(REF0_VERSION).location };
    await recordRunMetadata({ metrics: inputs.metrics, config, ...lineageDirs, promptsFile: '', offlineFile: inputs.offlineFile }, { promptsTopic: T('prompts') });
    const roles = [...inputs.roles];
    log.info('serving', { roles, namespace: namespace ?? '', promptsPerRound: N, policy: versionLabel(lineage.current().version) });
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

/**
 * The checkpoints topic as live state: every version published so far, the current policy (the
 * newest usable one: with a health gate, the last promoted) and the round that trains from it.
 */
class CheckpointWatcher {
  private readonly versions = new Map<number, Checkpoint>();
  readonly changes = new BehaviorSubject<Map<number, Checkpoint>>(this.versions);
  private subscription: { unsubscribe(): void } | null = null;

  constructor(
    private readonly bus: Bus,
    private readonly topic: string,
    private readonly gated: boolean,
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

  /** The policy samplers and scorers use now. */
  current(): Checkpoint {
    let best: Checkpoint | undefined;
    for (const c of this.versions.values()) if (isUsable(c, this.gated) && (!best || c.version > best.version)) best = c;
    if (!best) throw new Error(`no checkpoint on ${this.topic}`);
    return best;
  }

  rejected(): Set<number> {
    return rejectedVersions(this.versions.values());
  }

  /** The round that trains from the current policy (samples are made for it). */
  nextRound(): number {
    return roundFrom(this.current().version, this.rejected());
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

/**
 * Pull-style access to the checkpoint operator: the engine of a version, opened on first request,
 * replacing the previous one. Requests come one group at a time, so the group in flight finishes on
 * the old engine before the switch; `onSwitch` hears each switch and its time (open the new, close the old).
 */
function engineSwitch<E extends { close(): Promise<void> }>(
  open: (version: number) => Promise<E>,
  onSwitch: (from: number | null, to: number, seconds: number) => void = () => undefined,
): { get(version: number): Promise<E>; close(): Promise<void> } {
  const requests = new Subject<number>();
  const active = new BehaviorSubject<ActiveEngine<E> | null>(null);
  const finished = new Promise<void>((resolvePromise, reject) => {
    let t0 = 0;
    const timedOpen = (version: number) => {
      t0 = performance.now();
      return open(version);
    };
    requests.pipe(switchEngines(timedOpen)).subscribe({
      next: (a) => {
        onSwitch(active.value?.version ?? null, a.version, (performance.now() - t0) / 1000);
        active.next(a);
      },
      error: reject,
      complete: resolvePromise,
    });
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

/**
 * A role's busy and waiting time per round (`serve/role-time`): a round, as this process sees it,
 * runs from the policy it trains from being published to the next round becoming the current one.
 */
class RoleClock {
  private busyMs = 0;
  private since = performance.now();
  private started: number | null = null;
  private round: number;
  private readonly subscription: { unsubscribe(): void };

  constructor(
    private readonly role: ServeRole,
    private readonly ctx: RoleContext,
  ) {
    this.round = ctx.lineage.nextRound();
    this.subscription = ctx.lineage.changes.subscribe(() => {
      const next = ctx.lineage.nextRound();
      if (next > this.round) this.roundEnded(next);
    });
  }

  async busy<R>(work: () => Promise<R>): Promise<R> {
    this.started = performance.now();
    try {
      return await work();
    } finally {
      this.busyMs += performance.now() - (this.started ?? performance.now());
      this.started = null;
    }
  }

  private roundEnded(next: number): void {
    const now = performance.now();
    let busy = this.busyMs;
    if (this.started !== null) {
      busy += now - this.started;
      this.started = now; // the rest of the work in hand counts in the next round
    }
    const seconds = (now - this.since) / 1000;
    this.ctx.metrics.stageEvent(
      stageEvent('serve/role-time', { role: this.role, seconds, busySeconds: busy / 1000, waitingSeconds: Math.max(0, seconds - busy / 1000), utilisation: seconds > 0 ? busy / 1000 / seconds : 0 }),
      this.round,
    );
    this.busyMs = 0;
    this.since = now;
    this.round = next;
  }

  stop(): void {
    this.subscription.unsubscribe();
  }
}

async function samplerRole(ctx: RoleContext): Promise<void> {
  const { lineage, N } = ctx;
  const bound = ctx.config.serve.maxStaleness;
  const taken = new Map<number, number>();
  /**
   * A slot for one prompt: the current version and the round its group is for — the round that
   * trains from it while this process took fewer than N for it, else (bounded staleness) one of the
   * next `bound` rounds; once all are full, it waits for the next round.
   */
  const slot = async (): Promise<Slot | null> => {
    for (;;) {
      const version = lineage.current().version;
      const round = lineage.nextRound();
      for (let target = round; target <= round + bound; target++) {
        if ((taken.get(target) ?? 0) < N) {
          taken.set(target, (taken.get(target) ?? 0) + 1);
          return { version, round: target };
        }
      }
      try {
        // a promoted checkpoint moves the policy on, a rejected one only the round (fresh prompts, same policy)
        await lineage.waitFor(() => lineage.nextRound() > round, ctx.stop);
      } catch (err) {
        if (err instanceof StoppedError) return null;
        throw err;
      }
    }
  };
  const counts = await serveRecordStage(ctx, 'sampler', sampleStage, slot);
  ctx.log.info('sampler stopped', { ...counts });
}

async function scorerRole(ctx: RoleContext): Promise<void> {
  // the reward of the version that sampled the group, in the round the group is tagged with
  const counts = await serveRecordStage(ctx, 'scorer', scoreStage, async (g) => ({ version: g.policyVersion, round: g.round }));
  ctx.log.info('scorer stopped', { ...counts });
}

/** The policy version an input is computed under, and the round its output is for. */
interface Slot {
  version: number;
  round: number;
}

/**
 * A per-record stage as a service: every input of its topic, forever, each under a policy version
 * and for a round (`slotOf`: the sampler's slot, or the version that sampled a group and its round),
 * on the engine of that version (switched when the version moves on), in the chunks of the stage's grouping rule.
 */
async function serveRecordStage<In, Out, E extends { close(): Promise<void> }>(
  ctx: RoleContext,
  role: ServeRole,
  stage: RecordStage<In, Out, E>,
  slotOf: (input: In) => Promise<Slot | null>,
): Promise<StageCounts> {
  const { bus, config, lineage, T, metrics } = ctx;
  const dirOf = (v: number) => lineage.get(v).location;
  const contextOf = (slot: Slot): RoundContext => ({ config, versions: samplingVersions(slot.round, slot.version, config.method, lineage.rejected()), dirOf, runId: ctx.namespace ?? 'dice', roundPrompts: new Set(), roundPromptOrder: [] });
  const engines = engineSwitch(
    (v) => stage.openEngine(dirOf(v), config),
    (fromVersion, toVersion, seconds) => metrics.stageEvent(stageEvent('serve/engine-switch', { role, fromVersion, toVersion, seconds }), lineage.nextRound()),
  );
  const clock = new RoleClock(role, ctx);
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
            dropStale(stage, (v) => versionsBehind(v, lineage.current().version, lineage.rejected()), ctx, (v) => {
              const stale = stage.staleEvent?.(v);
              if (stale) metrics.stageEvent(stale.event, stale.round);
              drop(stage.inFlightKey(v));
            }),
            concatMap(async (input) => ({ input, slot: await slotOf(input) })),
            filter((x): x is { input: In; slot: Slot } => x.slot !== null),
            // dice serve has no round prompt list for the grouping rule to cut batches from (its
            // rounds form as groups arrive), so each input is computed alone: the rule's answer for an
            // empty round, and reproducible across restarts.
            concatMap(({ input, slot }) =>
              clock.busy(async () => {
                const round = contextOf(slot);
                const engine = await engines.get(stage.engineVersion(round.versions));
                return stage.call([input], engine, round);
              }),
            ),
            concatMap((outputs) => from(outputs)),
          ),
        emit: (e, round) => metrics.stageEvent(e, round),
        onRejected: (r) => ctx.log.warn(`${stage.input.topic} record rejected by the ${stage.name} stage (→ dead-letter)`, { key: r.key, error: r.error }),
      }),
    );
  } finally {
    clock.stop();
    await engines.close();
  }
}

async function trainerRole(ctx: RoleContext): Promise<void> {
  const { bus, config, lineage, T, N, log, metrics } = ctx;
  const groupId = `${ctx.namespace ?? 'dice'}.serve.train`;
  const waiting = new Map<number, Decoded<ScoredGroup>[]>();
  const clock = new RoleClock('trainer', ctx);
  let dropped = 0;
  /** Versions the group's sampler is behind the current policy (the one the next round trains from). */
  const behind = (g: ScoredGroup) => versionsBehind(g.policyVersion, lineage.current().version, lineage.rejected());
  // a group of a round trained already (or whose version the gate rejected since: its policy sampled on
  // for a fresh round), or sampled by a policy more than serve.maxStaleness versions behind
  const tooOld = (g: ScoredGroup) => config.strictOnPolicy && (g.round < lineage.nextRound() || tooStale(config, behind(g)));
  const drop = async (d: Decoded<ScoredGroup>) => {
    dropped++;
    metrics.stageEvent(stageEvent('train/stale-dropped', { promptId: d.value.promptId, policyVersion: d.value.policyVersion, round: d.value.round, staleness: behind(d.value) }), d.value.round);
    await commitAll(bus, groupId, [], [d]);
  };
  /** Runs every round that has its N groups (one may be waiting already when the version it trains from appears). */
  const roundsDue = async () => {
    for (;;) {
      for (const [r, list] of waiting) {
        const keep: Decoded<ScoredGroup>[] = [];
        for (const d of list) if (tooOld(d.value)) await drop(d);
        else keep.push(d);
        if (keep.length > 0) waiting.set(r, keep);
        else waiting.delete(r);
      }
      const round = lineage.nextRound();
      const list = waiting.get(round) ?? [];
      if (list.length < N) return;
      const groups = list.splice(0, N);
      const droppedBefore = dropped;
      dropped = 0;
      await clock.busy(() => serveRound(ctx, round, groups, groupId, droppedBefore));
    }
  };
  const scored$ = bus.consume({ groupId, topics: [T('scored')], maxInFlight: Math.max(1000, 4 * N * (1 + config.serve.maxStaleness)) }).pipe(
    takeUntil(ctx.stop$),
    decodeOrDeadLetter(bus, scoredTopic, { groupId, deadLetterTopic: T('dead-letter') }),
  );
  // a new version can make a round due without a new group (its N groups were sampled ahead, bounded staleness)
  const versions$ = lineage.changes.pipe(takeUntil(ctx.stop$), map(() => null));
  const run$ = merge(scored$, versions$).pipe(
    concatMap(async (d) => {
      if (d !== null) {
        if (tooOld(d.value)) return drop(d);
        const list = waiting.get(d.value.round) ?? [];
        list.push(d);
        waiting.set(d.value.round, list);
      }
      await roundsDue();
    }),
  );
  try {
    await lastValueFrom(run$, { defaultValue: undefined });
  } finally {
    clock.stop();
  }
  log.info('trainer stopped', { waitingGroups: [...waiting.values()].reduce((s, l) => s + l.length, 0) });
}

/** The prompt a scored group answers (the trainer's round lists its groups' prompts). */
function promptOf(g: ScoredGroup): PromptRecord {
  return { promptId: g.promptId, text: g.prompt, messages: null, source: 'scored', arrivalTime: 0 };
}

/** One round inside the trainer: Algorithm 1 from its N scored groups on — committed as one unit. */
async function serveRound(ctx: RoleContext, round: number, consumed: Decoded<ScoredGroup>[], groupId: string, droppedStale: number): Promise<void> {
  const { bus, config, lineage, T, metrics } = ctx;
  const rlog = ctx.log.child({ round });
  const offline = await readWholeTopic(bus, T('offline'), offlineTopic);
  // logged as the round/start event is emitted (nothing awaited in between)
  rlog.info('round starts', { policy: versionLabel(lineage.current().version), groups: consumed.length });
  const checkpointDir = join(resolve(ctx.outDir), `v${round}`);
  const executor = new ServiceRoundExecutor(consumed.map((d) => d.value), T, (e) => metrics.stageEvent(e, round), rlog);
  const { versions, windows } = await diceRound(
    {
      round,
      config,
      // v_t is on the topic only once the round commits; the health stage reads it where train wrote it
      dirOf: (v) => (v === round ? checkpointDir : lineage.get(v).location),
      runId: ctx.namespace ?? 'dice',
      roundPrompts: consumed.map((d) => promptOf(d.value)),
      offline,
      rejected: lineage.rejected(),
      train: { checkpointDir },
      emit: (e) => metrics.stageEvent(e, round),
    },
    executor,
  );
  metrics.stageEvent(stalenessHistogram(consumed.map((d) => d.value), windows ?? [], versions.policy, lineage.rejected(), config.serve.maxStaleness, droppedStale), round);
  await commitAll(bus, groupId, executor.outputs, consumed);
  // the watcher sees the new version on the topic; wait so this process's own roles switch before going on
  await firstValueFrom(lineage.changes.pipe(filter((m) => m.has(versions.produces))));
}

/** The round's `train/staleness` event: how far behind the round's policy the sampler of each training pair was. */
export function stalenessHistogram(
  groups: readonly ScoredGroup[],
  windows: ReadonlyArray<{ pairs: ReadonlyArray<{ promptId: string }> }>,
  policy: number,
  rejected: ReadonlySet<number>,
  maxStaleness: number,
  dropped: number,
): StageEvent<'train/staleness'> {
  const stalenessOf = new Map(groups.map((g) => [g.promptId, versionsBehind(g.policyVersion, policy, rejected)]));
  const histogram: number[] = Array(maxStaleness + 1).fill(0);
  let sum = 0;
  const pairs = windows.flatMap((w) => w.pairs);
  for (const p of pairs) {
    const s = stalenessOf.get(p.promptId) ?? 0;
    histogram[s] = (histogram[s] ?? 0) + 1;
    sum += s;
  }
  return stageEvent('train/staleness', {
    policyVersion: policy,
    maxStaleness,
    groups: groups.length,
    pairs: pairs.length,
    histogram: JSON.stringify(histogram),
    meanStaleness: pairs.length > 0 ? sum / pairs.length : 0,
    dropped,
  });
}
