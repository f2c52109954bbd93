#!/usr/bin/env node
// Runs every test/**/*.test.ts with node's test runner (Node 20 has no glob for --test).
// Usage: npm test [-- substring...]  (only test files whose path contains one of the substrings)
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function findTests(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'fixtures' ? [] : findTests(path);
    return path.endsWith('.test.ts') ? [path] : [];
  });
}

const filters = process.argv.slice(2);
const files = findTests('test').filter((f) => filters.length === 0 || filters.some((s) => f.includes(s))).sort();
if (files.length === 0) {
  console.error(`no test files match ${JSON.stringify(filters)}`);
  process.exit(1);
}
// Kafka tests need a broker: start infra/kafka's (fetching its jars on a clean clone) unless
// KAFKA_URL names one or it is already up, and stop it afterwards if it was started here.
const startedKafka = files.some((f) => f.includes('kafka')) && !process.env.KAFKA_URL ? startKafka() : false;
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
if (startedKafka) spawnSync('bash', ['infra/kafka/stop.sh'], { stdio: 'inherit' });
process.exit(result.status ?? 1);

function startKafka() {
  const start = spawnSync('bash', ['infra/kafka/start.sh'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  process.stdout.write(start.stdout);
  if (start.status !== 0) process.exit(1);
  const wait = spawnSync('bash', ['infra/kafka/wait.sh', '120'], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });
  if (wait.status !== 0) process.exit(1);
  process.env.KAFKA_URL = `kafka://${wait.stdout.trim().split('\n').pop()}`;
  return start.stdout.includes('kafka: started');
}
