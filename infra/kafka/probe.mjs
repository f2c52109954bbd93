// Exit 0 if the broker at HOST:PORT answers a metadata request with itself as a live broker.
// Used by wait.sh; uses kafkajs (a project dependency) so no extra tools are needed.
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../package.json', import.meta.url));
const { Kafka, logLevel } = require('kafkajs');
const [host, port] = process.argv[2].split(':');
const admin = new Kafka({
  clientId: 'dice-probe', brokers: [`${host}:${port}`], logLevel: logLevel.NOTHING,
  connectionTimeout: 1000, requestTimeout: 2000, retry: { retries: 0 },
}).admin();
try {
  await admin.connect();
  const { brokers } = await admin.describeCluster();
  await admin.disconnect();
  process.exit(brokers.length > 0 ? 0 : 1);
} catch {
  process.exit(1);
}
