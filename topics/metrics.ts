import { float64, int32, utf8, validateRecord, TopicValidationError } from './codec.ts';
import { schemaOf } from './common.ts';
import { jsonContract } from './contract.ts';

export type MetricValue = number | string | boolean | null;

/**
 * An event for the monitor: who (stage), what (type), when, in which round, plus free fields
 * (numbers, strings, booleans) at the top level, e.g. {stage:'score', type:'group', time, round: 1,
 * meanReward: 0.3}. JSON on the wire. Key: stage.
 */
export interface MetricEvent {
  stage: string;
  type: string;
  /** Milliseconds since epoch. */
  time: number;
  round: number | null;
  [field: string]: MetricValue;
}

const fixed = [utf8('stage'), utf8('type'), float64('time'), int32('round', true)];
const fixedSchema = schemaOf(fixed);

/** The archive schema: free fields as a JSON string column. */
export const metricsSchema = schemaOf([...fixed, utf8('fields')]);

const MAX_FREE_FIELDS = 256;

export const metricsTopic = jsonContract<MetricEvent>({
  name: 'metrics',
  schema: metricsSchema,
  defaultPartitions: 1,
  keyOf: (m) => m.stage,
  validate(value, limits) {
    const fail = (field: string, problem: string): never => {
      throw new TopicValidationError('metrics', field, problem);
    };
    if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('', 'expected a JSON object');
    const { stage, type, time, round, ...free } = value as Record<string, unknown>;
    const base = validateRecord('metrics', fixedSchema, { stage, type, time, round }, limits);
    const entries = Object.entries(free).filter(([, v]) => v !== undefined);
    if (entries.length > MAX_FREE_FIELDS) fail('', `has ${entries.length} free fields, over the limit of ${MAX_FREE_FIELDS}`);
    for (const [k, v] of entries) {
      const ok = v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
      if (!ok) fail(k, `a free field must be a finite number, string, boolean or null, got ${JSON.stringify(v) ?? typeof v}`);
      if (typeof v === 'string' && v.length > 65536) fail(k, 'string over 65536 characters');
    }
    return { ...Object.fromEntries(entries), ...base } as MetricEvent;
  },
});
