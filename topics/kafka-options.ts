import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { SASLOptions } from 'kafkajs';

/**
 * Connection and tuning options of the Kafka bus, from a URL or an object (the object wins).
 *
 *   kafka://HOST:PORT[?query]      kafkas://... is the same with TLS on
 *
 * query: brokers=HOST:PORT,HOST:PORT (more bootstrap brokers; a URL's authority holds only one)
 *        tls=1 | ca=PATH | cert=PATH | key=PATH | servername=NAME | rejectUnauthorized=0
 *        sasl=plain|scram-sha-256|scram-sha-512 with user:password@ in the URL or username=&password=
 *        clientId= | sessionTimeoutMs= | heartbeatIntervalMs= | maxWaitMs= | drainTimeoutMs= | transactionalId=
 */
export interface KafkaBusOptions {
  brokers: string[];
  clientId: string;
  ssl?: boolean | ConnectionOptions;
  sasl?: SASLOptions;
  /** A member that sends no heartbeat for this long is dropped from its group. Default 10 s. */
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Longest wait of one fetch when no records are there (bounds heartbeat gaps and idle latency). */
  maxWaitMs: number;
  /** How long close()/unsubscribe wait for in-flight records to be committed. Default 30 s. */
  drainTimeoutMs: number;
  /** The transactional id of produceAndCommit's producer; default: unique per bus instance. */
  transactionalId?: string;
}

export const KAFKA_DEFAULTS = {
  clientId: 'dice-stream',
  sessionTimeoutMs: 10_000,
  heartbeatIntervalMs: 1_000,
  maxWaitMs: 250,
  drainTimeoutMs: 30_000,
} as const;

const SASL_MECHANISMS = ['plain', 'scram-sha-256', 'scram-sha-512'] as const;

export function parseKafkaUrl(url: URL, overrides: Partial<KafkaBusOptions> = {}): KafkaBusOptions {
  if (url.protocol !== 'kafka:' && url.protocol !== 'kafkas:') {
    throw new Error(`kafka bus URL ${url.href}: the scheme must be kafka: or kafkas:, got ${url.protocol}`);
  }
  const q = url.searchParams;
  const brokers = [url.host, ...(q.get('brokers') ?? '').split(',')]
    .filter((b) => b.length > 0)
    .map((b) => (b.includes(':') ? b : `${b}:9092`));
  if (brokers.length === 0) throw new Error(`kafka bus URL ${url.href}: no broker (expected kafka://HOST:PORT)`);
  for (const b of brokers) {
    if (!/^[^:\s]+:\d{1,5}$/.test(b)) throw new Error(`kafka bus URL ${url.href}: broker ${JSON.stringify(b)} is not HOST:PORT`);
  }
  const num = (name: string, fallback: number): number => {
    const raw = q.get(name);
    if (raw === null) return fallback;
    const v = Number(raw);
    if (!Number.isFinite(v) || v <= 0) throw new Error(`kafka bus URL ${url.href}: ${name} must be a positive number, got ${JSON.stringify(raw)}`);
    return v;
  };
  const flag = (name: string): boolean | undefined => {
    const raw = q.get(name);
    if (raw === null) return undefined;
    if (['1', 'true', 'yes'].includes(raw)) return true;
    if (['0', 'false', 'no'].includes(raw)) return false;
    throw new Error(`kafka bus URL ${url.href}: ${name} must be true or false, got ${JSON.stringify(raw)}`);
  };
  const file = (name: string): string | undefined => {
    const path = q.get(name);
    if (path === null) return undefined;
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`kafka bus URL: cannot read the ${name} file ${path}: ${(err as Error).message}`);
    }
  };

  let ssl: boolean | ConnectionOptions | undefined;
  const tlsFiles = { ca: file('ca'), cert: file('cert'), key: file('key') };
  const servername = q.get('servername') ?? undefined;
  const rejectUnauthorized = flag('rejectUnauthorized');
  const tlsOn = url.protocol === 'kafkas:' || flag('tls') === true || flag('ssl') === true;
  if (tlsOn || tlsFiles.ca || tlsFiles.cert) {
    const opts: ConnectionOptions = {};
    if (tlsFiles.ca) opts.ca = tlsFiles.ca;
    if (tlsFiles.cert) opts.cert = tlsFiles.cert;
    if (tlsFiles.key) opts.key = tlsFiles.key;
    if (servername) opts.servername = servername;
    if (rejectUnauthorized !== undefined) opts.rejectUnauthorized = rejectUnauthorized;
    ssl = Object.keys(opts).length > 0 ? opts : true;
  }

  let sasl: SASLOptions | undefined;
  const mechanism = q.get('sasl');
  const username = q.get('username') ?? (url.username ? decodeURIComponent(url.username) : undefined);
  const password = q.get('password') ?? (url.password ? decodeURIComponent(url.password) : undefined);
  if (mechanism !== null || username !== undefined) {
    const m = (mechanism ?? 'plain').toLowerCase();
    if (!(SASL_MECHANISMS as readonly string[]).includes(m)) {
      throw new Error(`kafka bus URL ${url.href}: sasl must be one of ${SASL_MECHANISMS.join(', ')}, got ${JSON.stringify(mechanism)}`);
    }
    if (username === undefined || password === undefined) {
      throw new Error(`kafka bus URL: sasl=${m} needs a username and a password (user:password@host, or username=&password=)`);
    }
    sasl = { mechanism: m as (typeof SASL_MECHANISMS)[number], username, password } as SASLOptions;
  }

  const options: KafkaBusOptions = {
    brokers,
    clientId: q.get('clientId') ?? KAFKA_DEFAULTS.clientId,
    ssl,
    sasl,
    sessionTimeoutMs: num('sessionTimeoutMs', KAFKA_DEFAULTS.sessionTimeoutMs),
    heartbeatIntervalMs: num('heartbeatIntervalMs', KAFKA_DEFAULTS.heartbeatIntervalMs),
    maxWaitMs: num('maxWaitMs', KAFKA_DEFAULTS.maxWaitMs),
    drainTimeoutMs: num('drainTimeoutMs', KAFKA_DEFAULTS.drainTimeoutMs),
    transactionalId: q.get('transactionalId') ?? undefined,
    ...stripUndefined(overrides),
  };
  if (options.heartbeatIntervalMs >= options.sessionTimeoutMs) {
    throw new Error(
      `kafka bus: heartbeatIntervalMs (${options.heartbeatIntervalMs}) must be below sessionTimeoutMs (${options.sessionTimeoutMs})`,
    );
  }
  return options;
}

/** The URL shown for a bus: brokers only, never credentials. */
export function displayUrl(options: KafkaBusOptions): string {
  return `${options.ssl ? 'kafkas' : 'kafka'}://${options.brokers.join(',')}`;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
