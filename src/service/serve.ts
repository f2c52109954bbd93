import { join, resolve } from 'node:path';
import { BehaviorSubject, concatMap, filter, firstValueFrom, from, lastValueFrom, map, Observable, Subject, takeUntil, toArray } from 'rxjs';
import type { Bus, TopicRecords } from '../../topics/bus.ts';
import { batchesTopic, batchKey } from '../../topics/batches.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { decodeOrDeadLetter, type Decoded } from '../../topics/decode-or-dead-letter.ts';
import { offlineTopic } from '../../topics/offline.ts';
import { pairsTopic } from '../../topics/pairs.ts';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { createPipelineTopics, topicName, type TopicBaseName } from '../../topics/registry.ts';
import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { buildWindow } from '../../operators/alpha.ts';
import { batchUpTo } from '../../operators/batch-up-to.ts';
import { switchEngines, type ActiveEngine } from '../../operators/checkpoint.ts';
import type { Rejected } from '../../operators/ports.ts';
import { replay } from '../../operators/replay.ts';
import { sampleBatch } from '../../operators/sample.ts';
import { scoreBatch } from '../../operators/score.ts';
import { versionLabel } from '../../operators/train.ts';
import type { RunConfig } from '../config/schema.ts';
import { Sampler } from '../engine/sampler.ts';
import { Scorer } from '../engine/scorer.ts';
import { readChatTemplate } from '../model/load.ts';
import type { Logger } from '../util/log.ts';
import { ingestFile, offlineDefaults } from './ingest.ts';
import { publishInitialLineage, roundVersions } from './lineage.ts';
import type { MetricsEmitter } from './metrics.ts';
import { alphaOptions, engineOptions, generateParams } from './round-config.ts';
import { trainRound } from './train-round.ts';
import { commitAll, readWholeTopic, runPerRecordStage } from './stage-runner.ts';

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
  const { bus, config, lineage, T, N, metrics, log } = ctx;
  const engines = engineSwitch((v) => Sampler.open({ modelDir: lineage.get(v).location, ...engineOptions(config) }));
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
  try {
    const counts = await runPerRecordStage<PromptRecord, SamplesGroup>({
      bus,
      groupId: `${ctx.namespace ?? 'dice'}.serve.sample`,
      input: { topic: T('prompts'), contract: promptsTopic, deadLetterTopic: T('dead-letter') },
      keyOfInput: (p) => p.promptId,
      keyOfOutput: (g) => g.promptId,
      untilEnd: false,
      stop$: ctx.stop$,
      operator: () => (prompts$) =>
        prompts$.pipe(
          concatMap(async (prompt) => ({ prompt, version: await slot() })),
          filter((p): p is { prompt: PromptRecord; version: number } => p.version !== null),
          batchUpTo(8, 50),
          concatMap(async (batch) => {
            const out: Array<SamplesGroup | Rejected> = [];
            for (const version of new Set(batch.map((b) => b.version))) {
              const sampler = await engines.get(version);
              const prompts = batch.filter((b) => b.version === version).map((b) => b.prompt);
              const chat = config.sampling.chatTemplate && readChatTemplate(lineage.get(version).location) !== null;
              out.push(...(await sampleBatch(prompts, { sampler, policyVersion: version, round: version + 1, runSeed: config.seed, k: config.sampling.k, params: generateParams(config), chat })));
            }
            return out;
          }),
          concatMap((items) => from(items)),
        ),
      outputs: (g) => [{ topic: T('samples'), records: [{ key: g.promptId, value: samplesTopic.encode(g) }] }],
      onOutput: (g) => metrics.emit('sample', 'group', g.round, { promptId: g.promptId, policyVersion: g.policyVersion, tokens: g.responses.reduce((s, r) => s + r.tokenLength, 0) }),
      onRejected: (r) => log.warn('prompt rejected by the sampler (→ dead-letter)', { promptId: r.key, error: r.error }),
    });
    log.info('sampler stopped', { ...counts });
  } finally {
    await engines.close();
  }
}

async function scorerRole(ctx: RoleContext): Promise<void> {
  const { bus, config, lineage, T, metrics, log } = ctx;
  const engines = engineSwitch((v) => Scorer.open({ modelDir: lineage.get(v).location, ...engineOptions(config) }));
  let stale = 0;
  try {
    const counts = await runPerRecordStage<SamplesGroup, ScoredGroup>({
      bus,
      groupId: `${ctx.namespace ?? 'dice'}.serve.score`,
      input: { topic: T('samples'), contract: samplesTopic, deadLetterTopic: T('dead-letter') },
      keyOfInput: (g) => `${g.promptId}@${g.policyVersion}`,
      keyOfOutput: (g) => `${g.promptId}@${g.policyVersion}`,
      untilEnd: false,
      stop$: ctx.stop$,
      operator: (drop) => (groups$) =>
        groups$.pipe(
          filter((g) => {
            const fresh = !config.strictOnPolicy || g.policyVersion >= lineage.latest().version;
            if (!fresh) {
              stale++;
              metrics.emit('score', 'stale-dropped', g.round, { promptId: g.promptId, policyVersion: g.policyVersion });
              drop(`${g.promptId}@${g.policyVersion}`);
            }
            return fresh;
          }),
          batchUpTo(4, 50),
          concatMap(async (groups) => {
            const out: ScoredGroup[] = [];
            for (const version of new Set(groups.map((g) => g.policyVersion))) {
              const reference = roundVersions(version + 1, config.method).scoringReference;
              const scorer = await engines.get(reference);
              out.push(...(await scoreBatch(groups.filter((g) => g.policyVersion === version), { reference: scorer, referenceVersion: reference, beta: config.reward.beta })));
            }
            return out;
          }),
          concatMap((gs) => from(gs)),
        ),
      outputs: (g) => [{ topic: T('scored'), records: [{ key: g.promptId, value: scoredTopic.encode(g) }] }],
      onOutput: (g) => metrics.emit('score', 'group', g.round, { promptId: g.promptId, meanReward: g.responses.reduce((s, r) => s + r.reward, 0) / g.responses.length }),
    });
    log.info('scorer stopped', { ...counts, stale });
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
        ctx.metrics.emit('train', 'stale-dropped', d.value.round, { promptId: d.value.promptId, policyVersion: d.value.policyVersion });
        await commitAll(bus, groupId, [], [d]);
        return;
      }
      const list = waiting.get(d.value.policyVersion) ?? [];
      list.push(d);
      waiting.set(d.value.policyVersion, list);
      if (list.length < N || d.value.policyVersion !== current) return;
      // N fresh groups of the current policy: a round. Sorted so the result does not depend on arrival order.
      const chosen = list.splice(0, N).sort((a, b) => (a.value.promptId < b.value.promptId ? -1 : 1));
      await serveRound(ctx, current + 1, chosen, groupId);
    }),
  );
  await lastValueFrom(run$, { defaultValue: undefined });
  log.info('trainer stopped', { waitingGroups: [...waiting.values()].reduce((s, l) => s + l.length, 0) });
}

/** One round inside the trainer: α window, pairs, replay, DPO steps, checkpoint — committed as one unit. */
async function serveRound(ctx: RoleContext, round: number, consumed: Decoded<ScoredGroup>[], groupId: string): Promise<void> {
  const { bus, config, lineage, T, metrics } = ctx;
  const versions = roundVersions(round, config.method);
  const rlog = ctx.log.child({ round });
  rlog.info('round starts', { policy: versionLabel(versions.policy), groups: consumed.length });
  const window = buildWindow(consumed.map((d) => d.value), 0, alphaOptions(config, round));
  metrics.emit('alpha', 'window', round, {
    windowId: 0,
    alpha: window.alpha,
    lengthDiffBefore: window.lengths?.before.stats.mean ?? null,
    lengthDiffAfter: window.lengths?.after.stats.mean ?? null,
    pairs: window.pairs.length,
  });
  const offline = await readWholeTopic(bus, T('offline'), offlineTopic);
  const policyDir = lineage.get(versions.policy).location;
  const reference = await Scorer.open({ modelDir: lineage.get(versions.trainingReference).location, ...engineOptions(config) });
  try {
    const batches = await lastValueFrom(
      from(window.pairs).pipe(
        replay({
          round,
          runId: ctx.namespace ?? 'dice',
          runSeed: config.seed,
          gamma: config.replay.gamma,
          offline,
          reference,
          referenceIsSamplingPolicy: versions.trainingReference === versions.policy,
          chat: config.sampling.chatTemplate && readChatTemplate(policyDir) !== null,
          steps: config.train.steps,
          batchSize: config.train.batch,
        }),
        toArray(),
      ),
    );
    if (batches.length === 0) throw new Error(`round ${round}: no training pairs (the filters kept ${window.filter.groupsKept} of ${window.filter.groupsIn} groups)`);
    const { checkpoint } = await trainRound({
      config,
      round,
      versions,
      batches,
      dirOf: (v) => lineage.get(v).location,
      checkpointDir: join(resolve(ctx.outDir), `v${versions.produces}`),
      onStep: (e) => metrics.emit('train', 'step', round, { step: e.step, loss: e.metrics.loss, rewardAccuracy: e.metrics.rewardAccuracy, margin: e.metrics.margin }),
    });
    const last = { checkpoint };
    const outputs: TopicRecords[] = [
      { topic: T('pairs'), records: window.pairs.map((p) => ({ key: p.promptId, value: pairsTopic.encode(p) })) },
      { topic: T('batches'), records: batches.map((b) => ({ key: batchKey(b), value: batchesTopic.encode(b) })) },
      { topic: T('checkpoints'), records: [{ key: String(last.checkpoint.version), value: checkpointsTopic.encode(last.checkpoint) }] },
    ];
    await commitAll(bus, groupId, outputs, consumed);
    metrics.emit('checkpoint', 'published', round, { version: last.checkpoint.version, parentVersion: last.checkpoint.parentVersion, referenceVersion: last.checkpoint.referenceVersion, sha256: last.checkpoint.sha256 });
    rlog.info('checkpoint', { version: versionLabel(last.checkpoint.version), sha256: last.checkpoint.sha256 });
    // the watcher sees the new version on the topic; wait so this process's own roles switch before going on
    await firstValueFrom(lineage.changes.pipe(filter((m) => m.has(versions.produces))));
  } finally {
    await reference.close();
  }
}
