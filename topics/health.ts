import { Utf8 } from 'apache-arrow';
import { bool, float64, int32, listOf, utf8 } from './codec.ts';
import { schemaOf } from './common.ts';
import { jsonContract } from './contract.ts';

/**
 * The health of a new version v_t, measured before it is promoted, and the gate's decision on it
 * (src/stages/health.ts). JSON on the wire. Key: String(version). A metric is null where it is not
 * defined (no probes configured, or a probe group whose rewards are all equal).
 */
export interface HealthRecord {
  version: number;
  round: number;
  /** The last promoted version v_t was trained from (π_θ(t−1)). */
  parentVersion: number;
  runId: string;
  promoted: boolean;
  /** One line per failed check (empty when promoted). */
  reasons: string[];
  heldOutPairs: number;
  /** Held-out accuracy and mean margin of the round reward β(log π_t − log π_{t−1}). */
  roundAccuracy: number;
  roundMargin: number;
  /** …of the cumulative reward β(log π_t − log π_ref(0)), and the parent's under the same reward shape. */
  cumulativeAccuracy: number;
  cumulativeMargin: number;
  previousCumulativeAccuracy: number;
  probeGroups: number;
  /** Mean Kendall τ between the previous and the new reward's rankings of the probe responses. */
  rankingTau: number | null;
  /** Mean probe response length (characters) under v_{t−1} and v_t, and the relative change. */
  previousProbeLength: number | null;
  probeLength: number | null;
  lengthChange: number | null;
  /** KL(π_t ‖ π_{t−1}) in nats per sequence from v_t's probe samples, and its standard error. */
  kl: number | null;
  klStandardError: number | null;
}

export const healthSchema = schemaOf([
  int32('version'),
  int32('round'),
  int32('parentVersion'),
  utf8('runId'),
  bool('promoted'),
  listOf('reasons', new Utf8()),
  int32('heldOutPairs'),
  float64('roundAccuracy'),
  float64('roundMargin'),
  float64('cumulativeAccuracy'),
  float64('cumulativeMargin'),
  float64('previousCumulativeAccuracy'),
  int32('probeGroups'),
  float64('rankingTau', true),
  float64('previousProbeLength', true),
  float64('probeLength', true),
  float64('lengthChange', true),
  float64('kl', true),
  float64('klStandardError', true),
]);

export const healthTopic = jsonContract<HealthRecord>({
  name: 'health',
  schema: healthSchema,
  defaultPartitions: 1,
  keyOf: (h) => String(h.version),
  check(h, fail) {
    if (h.version < 1) fail('version', `must be ≥ 1 (a trained version), got ${h.version}`);
    if (h.promoted !== (h.reasons.length === 0)) fail('reasons', h.promoted ? 'a promoted version has no reasons' : 'a rejected version needs its reasons');
  },
});
