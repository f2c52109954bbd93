import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { healthTopic, type HealthRecord } from '../../topics/health.ts';
import type { OfflinePair } from '../../topics/offline.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { SamplesGroup } from '../../topics/samples.ts';
import type { SamplerPort, ScorerPort } from '../../operators/ports.ts';
import { answerText } from '../../operators/replay.ts';
import { sampleBatch } from '../../operators/sample.ts';
import type { RunConfig } from '../config/schema.ts';
import { splitHeldOut } from '../dice/held-out.ts';
import { gate, lengthShift, preferenceAccuracy, rankingConsistency, sequenceKl, type PairLogps, type VersionHealth } from '../dice/health.ts';
import { implicitReward } from '../dice/reward.ts';
import { Sampler } from '../engine/sampler.ts';
import { Scorer, type ScoreRequest } from '../engine/scorer.ts';
import { REF0_VERSION } from '../service/lineage.ts';
import { engineOptions, generateParams } from '../service/round-config.ts';
import { stageEvent, usesChatTemplate, type RoundContext, type RoundStage } from './stage.ts';

type Closable = { close(): Promise<void> };

export interface HealthDeps {
  /** D_offline (its held-out slice is what the stage reads). */
  offline: readonly OfflinePair[];
  /** Engines (default: the onnxruntime Scorer and Sampler); tests inject deterministic ones. */
  openScorer?: (modelDir: string, config: RunConfig) => Promise<ScorerPort & Closable>;
  openSampler?: (modelDir: string, config: RunConfig) => Promise<SamplerPort & Closable>;
}

export interface HealthResult {
  record: HealthRecord;
  /** v_t again, with the gate's decision: what samplers and scorers look at. */
  checkpoint: Checkpoint;
}

/** The probe prompts: those of the first held-out pairs, a fixed set for every round of a run. */
export function probePrompts(heldOut: readonly OfflinePair[], count: number): PromptRecord[] {
  return heldOut.slice(0, count).map((p) => ({ promptId: `probe:${p.pairId}`, text: p.prompt, messages: null, source: 'health-probe', arrivalTime: 0 }));
}

/**
 * After train — v_t → its health and the gate's decision (src/dice/health.ts), before any sampler
 * may use it: held-out accuracy of the round reward β(log π_t − log π_{t−1}) and of the cumulative
 * one β(log π_t − log π_ref(0)) on the held-out slice of D_offline (never replayed); on the probe
 * prompts, K' responses of v_t scored by the previous reward β(log π_{t−1} − log π_ref(t−1)) and the
 * new one (Kendall τ per group, CREAM), KL(π_t ‖ π_{t−1}) from the same responses (scorer log-probs
 * of both versions; the responses are drawn with the run's sampling settings, so this is the KL of
 * what the sampler sees), and the mean length against v_{t−1}'s responses. All seeded: a replay
 * re-derives the same decision.
 */
export const healthStage: RoundStage<Checkpoint, HealthRecord, HealthDeps, HealthResult, 'health/version' | 'health/gate-failed'> = {
  kind: 'whole-round',
  name: 'health',
  input: { topic: 'checkpoints', contract: checkpointsTopic, key: (c) => String(c.version) },
  output: { topic: 'health', contract: healthTopic, key: (h) => String(h.version) },
  also: [{ side: { topic: 'checkpoints', contract: checkpointsTopic, key: (c) => String(c.version) }, values: (r: HealthResult) => [r.checkpoint] }],
  emits: ['health/version', 'health/gate-failed'],
  inRound: (c, ctx) => c.version === ctx.versions.produces,
  // the train stage's record of v_t first (a gated record of it, this stage's own, comes after)
  order: (a, b) => Number(a.gate !== undefined) - Number(b.gate !== undefined) || a.createdAt - b.createdAt,
  async derive(checkpoints, deps, ctx) {
    const { versions } = ctx;
    const [trained] = checkpoints;
    if (!trained) throw new Error(`round ${versions.round}: the health stage found no checkpoint v${versions.produces}`);
    const record = await measureHealth(deps, ctx);
    const { gate: _recorded, ...produced } = trained;
    return { record, checkpoint: { ...produced, gate: { promoted: record.promoted, reasons: record.reasons } } };
  },
  outputs: (r) => [r.record],
  project: (r) => {
    const h = r.record;
    const events = [
      stageEvent('health/version', {
        version: h.version,
        parentVersion: h.parentVersion,
        promoted: h.promoted,
        roundAccuracy: h.roundAccuracy,
        cumulativeAccuracy: h.cumulativeAccuracy,
        previousCumulativeAccuracy: h.previousCumulativeAccuracy,
        rankingTau: h.rankingTau,
        probeLength: h.probeLength,
        lengthChange: h.lengthChange,
        kl: h.kl,
      }),
    ];
    return h.promoted ? events : [...events, stageEvent('health/gate-failed', { version: h.version, parentVersion: h.parentVersion, reasons: h.reasons.join('; ') })];
  },
  logLines: (r) => [
    {
      msg: r.record.promoted ? 'version promoted' : 'version rejected by the health gate',
      fields: { version: r.record.version, roundAccuracy: r.record.roundAccuracy, cumulativeAccuracy: r.record.cumulativeAccuracy, rankingTau: r.record.rankingTau, kl: r.record.kl, reasons: r.record.reasons },
    },
  ],
};

async function measureHealth(deps: HealthDeps, ctx: RoundContext): Promise<HealthRecord> {
  const { config, versions } = ctx;
  const beta = config.reward.beta;
  const { heldOut } = splitHeldOut(deps.offline, config.health.heldOutPairs, config.seed);
  if (heldOut.length === 0) throw new Error('the health stage needs held-out pairs: set health.heldOutPairs > 0 and give offline pairs');
  const chat = usesChatTemplate(config, ctx.dirOf(versions.policy));
  const openSampler = deps.openSampler ?? ((dir, c) => Sampler.open({ modelDir: dir, ...engineOptions(c) }));
  const openScorer = deps.openScorer ?? ((dir, c) => Scorer.open({ modelDir: dir, ...engineOptions(c) }));

  // Probe responses of v_t (ranking, KL, length) and of v_{t−1} (its length).
  const probes = probePrompts(heldOut, config.health.probePrompts);
  const sampleProbes = async (version: number): Promise<SamplesGroup[]> => {
    if (probes.length === 0) return [];
    const sampler = await openSampler(ctx.dirOf(version), config);
    try {
      const out = await sampleBatch(probes, { sampler, policyVersion: version, round: versions.round, runSeed: config.seed, k: config.health.probeSamples, params: generateParams(config), chat });
      return out.map((g) => {
        if ('kind' in g) throw new Error(`health probe ${g.key}: ${g.error}`);
        return g;
      });
    } finally {
      await sampler.close();
    }
  };
  const newProbes = await sampleProbes(versions.produces);
  const oldProbes = await sampleProbes(versions.policy);

  // Every log-prob the stage needs, one scorer per version: held-out chosen/rejected texts, then v_t's probe responses.
  const heldOutRequests: ScoreRequest[] = heldOut.flatMap((p) => (['chosen', 'rejected'] as const).map((side) => ({ prompt: p.prompt, chat, response: answerText(p, side) })));
  const probeRequests: ScoreRequest[] = newProbes.flatMap((g) => g.responses.map((r) => ({ promptTokenIds: Array.from(g.promptTokenIds), responseTokenIds: Array.from(r.tokenIds) })));
  const wants = new Map<number, ScoreRequest[]>();
  const want = (version: number, requests: ScoreRequest[]) => wants.set(version, [...(wants.get(version) ?? []), ...requests]);
  want(versions.produces, [...heldOutRequests, ...probeRequests]);
  want(versions.policy, [...heldOutRequests, ...probeRequests]);
  want(REF0_VERSION, heldOutRequests);
  want(versions.scoringReference, probeRequests);
  const logps = new Map<number, { heldOut: number[]; probe: number[] }>();
  for (const [version, requests] of [...wants].sort((a, b) => a[0] - b[0])) {
    const scorer = await openScorer(ctx.dirOf(version), config);
    try {
      const out = (await scorer.score(requests)).map((o) => o.logProb);
      // A version asked for both parts got them in order (held-out first); one asked for one part got that part.
      const hasHeldOut = version === versions.produces || version === versions.policy || version === REF0_VERSION;
      const hasProbe = version === versions.produces || version === versions.policy || version === versions.scoringReference;
      const h = hasHeldOut ? out.slice(0, heldOutRequests.length) : [];
      logps.set(version, { heldOut: h, probe: hasProbe ? out.slice(h.length) : [] });
    } finally {
      await scorer.close();
    }
  }
  const lp = (v: number) => logps.get(v)!;
  const pairsOf = (policy: number, reference: number): PairLogps[] =>
    heldOut.map((_, i) => ({ chosenPolicy: lp(policy).heldOut[2 * i], chosenRef: lp(reference).heldOut[2 * i], rejectedPolicy: lp(policy).heldOut[2 * i + 1], rejectedRef: lp(reference).heldOut[2 * i + 1] }));
  const roundAccuracy = preferenceAccuracy(pairsOf(versions.produces, versions.policy), beta);
  const cumulativeAccuracy = preferenceAccuracy(pairsOf(versions.produces, REF0_VERSION), beta);
  // the parent's accuracy under the same reward shape (v0's: the DPO base against π_ref(0))
  const previousCumulative = preferenceAccuracy(pairsOf(versions.policy, REF0_VERSION), beta);

  let ranking: VersionHealth['ranking'] = { meanTau: NaN, groups: 0 };
  let length: VersionHealth['length'] = { previousMean: NaN, newMean: NaN, relativeChange: NaN };
  let kl: VersionHealth['kl'] = { kl: NaN, standardError: NaN, samples: 0 };
  if (newProbes.length > 0) {
    const previous: number[][] = [];
    const next: number[][] = [];
    let i = 0;
    for (const g of newProbes) {
      const p: number[] = [];
      const n: number[] = [];
      for (const _ of g.responses) {
        p.push(implicitReward(lp(versions.policy).probe[i], lp(versions.scoringReference).probe[i], beta));
        n.push(implicitReward(lp(versions.produces).probe[i], lp(versions.policy).probe[i], beta));
        i++;
      }
      previous.push(p);
      next.push(n);
    }
    ranking = rankingConsistency(previous, next);
    kl = sequenceKl(lp(versions.produces).probe, lp(versions.policy).probe);
    const lengths = (groups: SamplesGroup[]) => groups.flatMap((g) => g.responses.map((r) => r.charLength));
    length = lengthShift(lengths(oldProbes), lengths(newProbes));
  }
  const health: VersionHealth = {
    version: versions.produces,
    roundAccuracy,
    cumulativeAccuracy,
    previousCumulativeAccuracy: previousCumulative.accuracy,
    ranking,
    length,
    kl,
  };
  const decision = gate(health, config.gate);
  const orNull = (x: number) => (Number.isFinite(x) ? x : null);
  return {
    version: versions.produces,
    round: versions.round,
    parentVersion: versions.policy,
    runId: ctx.runId,
    promoted: decision.promoted,
    reasons: decision.reasons,
    heldOutPairs: heldOut.length,
    roundAccuracy: roundAccuracy.accuracy,
    roundMargin: roundAccuracy.meanMargin,
    cumulativeAccuracy: cumulativeAccuracy.accuracy,
    cumulativeMargin: cumulativeAccuracy.meanMargin,
    previousCumulativeAccuracy: previousCumulative.accuracy,
    probeGroups: ranking.groups,
    rankingTau: orNull(ranking.meanTau),
    previousProbeLength: orNull(length.previousMean),
    probeLength: orNull(length.newMean),
    lengthChange: orNull(length.relativeChange),
    kl: orNull(kl.kl),
    klStandardError: orNull(kl.standardError),
  };
}
