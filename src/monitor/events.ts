import type { BusRecord } from '../../topics/bus.ts';

/**
 * What the monitor holds and sends to pages: a metric event from the metrics topic, a checkpoint
 * announcement, or a bus observation (throughput, lag) made by the monitor itself. The shape is open
 * on purpose: the page charts the types it knows and shows every event in a raw log.
 */
export interface MonitorEvent {
  stage: string;
  type: string;
  /** Milliseconds since epoch. */
  time: number;
  round?: number;
  /** Monotonic sequence number assigned by the monitor (order of arrival). */
  seq?: number;
  [field: string]: unknown;
}

const decoder = new TextDecoder();

function parseJsonObject(value: Uint8Array): { ok: true; value: Record<string, unknown> } | { ok: false; error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(value));
  } catch (err) {
    return { ok: false, error: `value is not JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, error: 'value is not a JSON object' };
  }
  return { ok: true, value: parsed as Record<string, unknown> };
}

function invalidRecord(record: BusRecord, error: string): MonitorEvent {
  return {
    stage: 'monitor',
    type: 'invalid-record',
    time: record.timestamp,
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    error,
  };
}

/** A metrics-topic record as an event; a record that is not one becomes an `invalid-record` event. */
export function metricEventFromRecord(record: BusRecord): MonitorEvent {
  const parsed = parseJsonObject(record.value);
  if (!parsed.ok) return invalidRecord(record, parsed.error);
  const v = parsed.value;
  if (typeof v.stage !== 'string' || typeof v.type !== 'string') {
    return invalidRecord(record, 'metric event needs string fields "stage" and "type"');
  }
  const time = typeof v.time === 'number' && Number.isFinite(v.time) ? v.time : record.timestamp;
  return { ...v, stage: v.stage, type: v.type, time };
}

/** A checkpoints-topic record (JSON) as a `checkpoint` event carrying all of its fields. */
export function checkpointEventFromRecord(record: BusRecord): MonitorEvent {
  const parsed = parseJsonObject(record.value);
  if (!parsed.ok) return invalidRecord(record, parsed.error);
  const v = parsed.value;
  const created = v.createdAt ?? v.time;
  const time = typeof created === 'number' && Number.isFinite(created) ? created : record.timestamp;
  return { ...v, stage: 'checkpoint', type: 'checkpoint', time, key: record.key };
}

/** Validates an event handed to `publish` in-process; throws naming the bad field. */
export function checkEvent(event: unknown): MonitorEvent {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) {
    throw new Error('monitor event must be an object {stage, type, time, ...}');
  }
  const e = event as Record<string, unknown>;
  if (typeof e.stage !== 'string' || e.stage === '') throw new Error('monitor event: "stage" must be a non-empty string');
  if (typeof e.type !== 'string' || e.type === '') throw new Error('monitor event: "type" must be a non-empty string');
  if (e.time !== undefined && (typeof e.time !== 'number' || !Number.isFinite(e.time))) {
    throw new Error('monitor event: "time" must be a finite number of milliseconds since epoch');
  }
  return { ...e, stage: e.stage, type: e.type, time: (e.time as number | undefined) ?? Date.now() };
}

const MAX_KEPT_STRING = 200;

/**
 * Bounds one event's serialized size. An oversized event keeps its identity (stage, type, time,
 * round, seq) and its scalar fields, with long strings cut, and is marked `truncated`; if even that
 * is too big only the identity stays.
 */
export function boundEvent(event: MonitorEvent, maxBytes: number): { event: MonitorEvent; json: string } {
  const json = JSON.stringify(event);
  if (Buffer.byteLength(json) <= maxBytes) return { event, json };
  const identity: MonitorEvent = { stage: event.stage.slice(0, MAX_KEPT_STRING), type: event.type.slice(0, MAX_KEPT_STRING), time: event.time };
  if (typeof event.round === 'number') identity.round = event.round;
  if (typeof event.seq === 'number') identity.seq = event.seq;
  identity.truncated = true;
  identity.originalBytes = Buffer.byteLength(json);
  const slim: MonitorEvent = { ...identity };
  for (const [k, v] of Object.entries(event)) {
    if (k in slim) continue;
    if (typeof v === 'number' || typeof v === 'boolean') slim[k] = v;
    else if (typeof v === 'string') slim[k] = v.length > MAX_KEPT_STRING ? `${v.slice(0, MAX_KEPT_STRING)}…` : v;
  }
  const slimJson = JSON.stringify(slim);
  if (Buffer.byteLength(slimJson) <= maxBytes) return { event: slim, json: slimJson };
  return { event: identity, json: JSON.stringify(identity) };
}
