import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The broker the Kafka tests run against: $KAFKA_URL if set (scripts/test.mjs and .ci/run set it
 * after starting infra/kafka), else infra/kafka's default run folder, started here if it is not up
 * (fetching the jars on a clean clone). `stopIfStarted` stops only a broker this process started.
 */
const infra = fileURLToPath(new URL('../../infra/kafka/', import.meta.url));
let startedHere: string | null = null;

export function runScript(script: 'start.sh' | 'stop.sh' | 'wait.sh', args: string[] = [], runDir?: string): string {
  const env = { ...process.env };
  if (runDir) env.KAFKA_RUN_DIR = runDir;
  const r = spawnSync('bash', [`${infra}${script}`, ...args], { env, encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`infra/kafka/${script} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout.trim();
}

/** Starts (or finds) the broker of `runDir` and waits until it serves; returns its kafka:// URL. */
export function startBroker(runDir?: string, port?: number): string {
  runScript('start.sh', port === undefined ? [] : [String(port)], runDir);
  const bootstrap = runScript('wait.sh', ['120'], runDir).split('\n').pop()!;
  return `kafka://${bootstrap}`;
}

export function stopBroker(runDir?: string): void {
  runScript('stop.sh', [], runDir);
}

export function kafkaTestUrl(): string {
  if (process.env.KAFKA_URL) return process.env.KAFKA_URL;
  const defaultRun = `${infra}run`;
  const alive = existsSync(`${defaultRun}/broker.pid`) && spawnSync('bash', [`${infra}wait.sh`, '1'], { encoding: 'utf8' }).status === 0;
  if (alive) return `kafka://${readFileSync(`${defaultRun}/bootstrap`, 'utf8').trim()}`;
  const url = startBroker();
  startedHere = defaultRun;
  return url;
}

export function stopIfStarted(): void {
  if (startedHere) stopBroker();
  startedHere = null;
}
