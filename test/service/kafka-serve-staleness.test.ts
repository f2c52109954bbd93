import test, { after } from 'node:test';
import { kafkaTestUrl, stopIfStarted } from '../topics/kafka-broker.ts';
import { checkBoundedStaleness } from './stale-serve.ts';

const url = kafkaTestUrl();
after(() => stopIfStarted());

test('dice serve with serve.maxStaleness=1 over the real Kafka broker: samplers work while a round trains, rewards from the sampling version, over-bound groups dropped', async () => {
  await checkBoundedStaleness(url, `stale${Date.now()}`);
});
