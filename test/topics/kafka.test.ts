// The Bus conformance suite against a real Kafka broker (infra/kafka; started here if not up).
import { after } from 'node:test';
import { openKafkaBus } from '../../topics/kafka.ts';
import { busConformanceSuite } from './bus-conformance.ts';
import { kafkaTestUrl, stopIfStarted } from './kafka-broker.ts';

const url = kafkaTestUrl();
after(() => stopIfStarted());

// Short sessions so a group notices a member that is gone within seconds.
busConformanceSuite('kafka', () => openKafkaBus(new URL(url), { sessionTimeoutMs: 3000, heartbeatIntervalMs: 500 }), {
  waitMs: 30_000,
});
