/**
 * Reward health of a new policy version, measured before it is promoted, and the gate that decides
 * on it. Pure functions over log-probs the engines already compute; the service's health stage feeds
 * them and publishes the decision.
 *
 * Why these signals (the paper's App. B shows a third unattended round losing LC):
 *  - held-out preference accuracy: DPO's implicit reward generalises worse than an explicit reward
 *    model out of distribution (Lin et al. 2024), so its accuracy on a slice of D_offline that was
 *    never trained on is the generalisation signal — for the round's reward β(log π_t − log π_{t−1})
 *    and the cumulative one β(log π_t − log π_ref(0));
 *  - ranking consistency: Kendall τ between the previous and the new reward's rankings of the same
 *    responses (CREAM, arXiv 2410.12735) — a reward that reorders everything has drifted;
 *  - length drift on probe prompts (iterative DPO drifts longer, arXiv 2406.11817) and KL(π_t ‖ π_{t−1}).
 */
import { summarize } from './pairs.ts';
import { implicitReward } from './reward.ts';

/** Sequence log-probs of one held-out preference pair under the policy and the reference of a reward. */
export interface PairLogps {
  chosenPolicy: number;
  chosenRef: number;
  rejectedPolicy: number;
  rejectedRef: number;
}

export interface PreferenceAccuracy {
  /** Fraction of pairs whose implicit reward prefers the labelled chosen response; a tie counts ½. */
  accuracy: number;
  /** Mean r(chosen) − r(rejected). */
  meanMargin: number;
  count: number;
}

/** How often the implicit reward β(log π − log π_ref) agrees with held-out preference labels. */
export function preferenceAccuracy(pairs: readonly PairLogps[], beta: number): PreferenceAccuracy {
  if (pairs.length === 0) throw new Error('preferenceAccuracy: no held-out pairs (set health.heldOutPairs > 0)');
  let agree = 0;
  let margin = 0;
  pairs.forEach((p, i) => {
    for (const [name, v] of Object.entries(p)) {
      if (!Number.isFinite(v)) throw new Error(`preferenceAccuracy: pair ${i} has ${name} = ${v}, expected a finite log-prob`);
    }
    const m = implicitReward(p.chosenPolicy, p.chosenRef, beta) - implicitReward(p.rejectedPolicy, p.rejectedRef, beta);
    agree += m > 0 ? 1 : m === 0 ? 0.5 : 0;
    margin += m;
  });
  return { accuracy: agree / pairs.length, meanMargin: margin / pairs.length, count: pairs.length };
}

/**
 * Kendall τ-b of two scorings of the same items (ties in either one handled as τ-b does). NaN when
 * either scoring is constant, where no ranking exists to compare. O(n²): groups hold K ≈ 16 items.
 */
export function kendallTau(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`kendallTau: ${a.length} scores against ${b.length}`);
  let concordant = 0;
  let discordant = 0;
  let tiedA = 0;
  let tiedB = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = i + 1; j < a.length; j++) {
      const da = Math.sign(a[i] - a[j]);
      const db = Math.sign(b[i] - b[j]);
      if (da === 0 && db === 0) continue;
      if (da === 0) tiedA++;
      else if (db === 0) tiedB++;
      else if (da === db) concordant++;
      else discordant++;
    }
  }
  const denominator = Math.sqrt((concordant + discordant + tiedA) * (concordant + discordant + tiedB));
  return denominator === 0 ? NaN : (concordant - discordant) / denominator;
}

export interface RankingConsistency {
  /** Mean Kendall τ over the probe groups where it is defined. */
  meanTau: number;
  /** Groups with a defined τ (a group whose rewards are all equal under either version has none). */
  groups: number;
}

/** CREAM's consistency: per probe group, τ between the previous and the new reward of its responses. */
export function rankingConsistency(
  previous: ReadonlyArray<ArrayLike<number>>,
  next: ReadonlyArray<ArrayLike<number>>,
): RankingConsistency {
  if (previous.length !== next.length) throw new Error(`rankingConsistency: ${previous.length} previous groups, ${next.length} new`);
  let sum = 0;
  let groups = 0;
  previous.forEach((prev, g) => {
    const tau = kendallTau(prev, next[g]);
    if (Number.isNaN(tau)) return;
    sum += tau;
    groups++;
  });
  return { meanTau: groups === 0 ? NaN : sum / groups, groups };
}

export interface KlEstimate {
  /** Nats per sequence. */
  kl: number;
  standardError: number;
  samples: number;
}

/**
 * KL(π_new ‖ π_old) from responses sampled from π_new: the mean of log π_new(y|x) − log π_old(y|x)
 * (unbiased; a single draw can be negative, so its standard error is reported with it).
 */
export function sequenceKl(newLogps: ArrayLike<number>, oldLogps: ArrayLike<number>): KlEstimate {
  if (newLogps.length !== oldLogps.length) throw new Error(`sequenceKl: ${newLogps.length} new log-probs, ${oldLogps.length} old`);
  if (newLogps.length === 0) throw new Error('sequenceKl: no probe samples');
  const diffs = Float64Array.from({ length: newLogps.length }, (_, i) => newLogps[i] - oldLogps[i]);
  const stats = summarize(diffs);
  const n = diffs.length;
  return { kl: stats.mean, standardError: n > 1 ? (stats.std * Math.sqrt(n / (n - 1))) / Math.sqrt(n) : NaN, samples: n };
}

export interface LengthShift {
  previousMean: number;
  newMean: number;
  /** (new − previous) / previous. */
  relativeChange: number;
}

/** Mean response length on the probe prompts under the previous and the new version. */
export function lengthShift(previousLengths: ArrayLike<number>, newLengths: ArrayLike<number>): LengthShift {
  if (previousLengths.length === 0 || newLengths.length === 0) throw new Error('lengthShift: no probe responses');
  const previousMean = summarize(previousLengths).mean;
  const newMean = summarize(newLengths).mean;
  return { previousMean, newMean, relativeChange: previousMean === 0 ? (newMean === 0 ? 0 : Infinity) : (newMean - previousMean) / previousMean };
}

/** Health of version v_t, the input of the gate. */
export interface VersionHealth {
  version: number;
  /** Round reward β(log π_t − log π_{t−1}) on the held-out pairs. */
  roundAccuracy: PreferenceAccuracy;
  /** Cumulative reward β(log π_t − log π_ref(0)) on the held-out pairs. */
  cumulativeAccuracy: PreferenceAccuracy;
  /** The last promoted version's cumulative accuracy (absent for the first version checked). */
  previousCumulativeAccuracy?: number;
  ranking: RankingConsistency;
  length: LengthShift;
  kl: KlEstimate;
}

/** The gate's thresholds; a threshold left out is not checked. */
export interface GatePolicy {
  mode: 'always-promote' | 'thresholds';
  /** Round reward's held-out accuracy must reach this (0.5 = chance). */
  minRoundAccuracy?: number;
  /** Cumulative held-out accuracy may fall at most this far below the last promoted version's. */
  maxCumulativeAccuracyDrop?: number;
  /** Mean Kendall τ between the previous and the new reward's rankings. */
  minRankingTau?: number;
  /** Largest relative growth of the mean probe length (0.25 = 25 % longer). */
  maxLengthGrowth?: number;
  /** Largest KL(π_t ‖ π_{t−1}) in nats per sequence. */
  maxKl?: number;
}

export interface GateDecision {
  promoted: boolean;
  /** One line per failed check, naming the metric, its value and the threshold. */
  reasons: string[];
}

const fmt = (x: number) => (Number.isFinite(x) ? Number(x.toPrecision(4)).toString() : String(x));

/** Far below any meaningful step of a metric (one held-out pair of 10⁴ is 10⁻⁴), far above float rounding. */
const GATE_TOLERANCE = 1e-9;

/** Promote v_t or reject it with its reasons. An undefined metric (NaN) fails the check it feeds. */
export function gate(health: VersionHealth, policy: GatePolicy): GateDecision {
  if (policy.mode === 'always-promote') return { promoted: true, reasons: [] };
  const reasons: string[] = [];
  // a metric at its threshold passes: differences of accuracies (0.73 − 0.71 = 0.0200…02) carry rounding
  const below = (name: string, value: number, min: number | undefined) => {
    if (min !== undefined && !(value >= min - GATE_TOLERANCE)) reasons.push(`${name} ${fmt(value)} < ${fmt(min)}`);
  };
  const above = (name: string, value: number, max: number | undefined) => {
    if (max !== undefined && !(value <= max + GATE_TOLERANCE)) reasons.push(`${name} ${fmt(value)} > ${fmt(max)}`);
  };
  below('held-out accuracy of the round reward', health.roundAccuracy.accuracy, policy.minRoundAccuracy);
  if (health.previousCumulativeAccuracy !== undefined) {
    above(
      'drop of the cumulative held-out accuracy',
      health.previousCumulativeAccuracy - health.cumulativeAccuracy.accuracy,
      policy.maxCumulativeAccuracyDrop,
    );
  }
  below('ranking consistency (Kendall τ)', health.ranking.meanTau, policy.minRankingTau);
  above('relative growth of the probe length', health.length.relativeChange, policy.maxLengthGrowth);
  above('KL(π_t ‖ π_t−1) in nats', health.kl.kl, policy.maxKl);
  return { promoted: reasons.length === 0, reasons };
}
