import { float64, int32, utf8, validateRecord, TopicValidationError } from './codec.ts';
import { schemaOf } from './common.ts';
import { jsonContract } from './contract.ts';

/** A published policy checkpoint. JSON on the wire. Key: String(version). */
export interface Checkpoint {
  version: number;
  /** The checkpoint training started from (π_θ(t−1)); null for the first one. */
  parentVersion: number | null;
  /** The reference used while training it; null for the first one. */
  referenceVersion: number | null;
  round: number;
  /** Where the weights are (a directory with config.json + model.safetensors, or a URL). */
  location: string;
  /** sha256 of model.safetensors, lowercase hex. */
  sha256: string;
  /** Training metrics (final loss, reward accuracy, …). */
  metrics: Record<string, number>;
  /** Milliseconds since epoch. */
  createdAt: number;
  /**
   * The health gate's decision, on the record the health stage publishes after its check (absent:
   * not gated — the train stage's record, or a run without a health stage). Samplers and scorers
   * only use promoted versions.
   */
  gate?: CheckpointGate;
}

export interface CheckpointGate {
  promoted: boolean;
  reasons: string[];
}

const fixed = [
  int32('version'),
  int32('parentVersion', true),
  int32('referenceVersion', true),
  int32('round'),
  utf8('location'),
  utf8('sha256'),
  float64('createdAt'),
];
const fixedSchema = schemaOf(fixed);

/** The archive schema: metrics as a JSON string column. */
export const checkpointsSchema = schemaOf([...fixed, utf8('metrics')]);

export const checkpointsTopic = jsonContract<Checkpoint>({
  name: 'checkpoints',
  schema: checkpointsSchema,
  defaultPartitions: 1,
  keyOf: (c) => String(c.version),
  validate(value, limits) {
    const fail = (field: string, problem: string): never => {
      throw new TopicValidationError('checkpoints', field, problem);
    };
    const { metrics, gate, ...rest } = (typeof value === 'object' && value !== null ? value : { value }) as Record<string, unknown>;
    const c = validateRecord('checkpoints', fixedSchema, Array.isArray(value) ? value : rest, limits) as unknown as Checkpoint;
    // −1 is the run's initial reference π_ref(0) (e.g. the SFT model); policies are 0, 1, 2, …
    if (c.version < -1) fail('version', `must be ≥ −1 (−1: the initial reference), got ${c.version}`);
    if (!/^[0-9a-f]{64}$/.test(c.sha256)) fail('sha256', 'must be 64 lowercase hex digits');
    if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) {
      fail('metrics', metrics === undefined ? 'is missing' : 'expected an object of numbers');
    }
    const m: Record<string, number> = {};
    for (const [k, v] of Object.entries(metrics as Record<string, unknown>)) {
      if (typeof v !== 'number' || !Number.isFinite(v)) fail(`metrics.${k}`, `expected a finite number, got ${JSON.stringify(v)}`);
      m[k] = v as number;
    }
    if (gate === undefined) return { ...c, metrics: m };
    const g = gate as Partial<CheckpointGate> | null;
    if (typeof g !== 'object' || g === null || typeof g.promoted !== 'boolean' || !Array.isArray(g.reasons) || !g.reasons.every((r) => typeof r === 'string')) {
      fail('gate', 'expected {promoted: boolean, reasons: string[]}');
    }
    return { ...c, metrics: m, gate: { promoted: g!.promoted!, reasons: [...g!.reasons!] } };
  },
});
