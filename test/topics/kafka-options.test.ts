// Kafka bus URL/options parsing: brokers, TLS and SASL passed through, tuning, clear errors.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { displayUrl, KAFKA_DEFAULTS, parseKafkaUrl } from '../../topics/kafka-options.ts';

test('a plain URL gives its broker and the defaults', () => {
  const o = parseKafkaUrl(new URL('kafka://127.0.0.1:9092'));
  assert.deepEqual(o.brokers, ['127.0.0.1:9092']);
  assert.equal(o.ssl, undefined);
  assert.equal(o.sasl, undefined);
  assert.equal(o.sessionTimeoutMs, KAFKA_DEFAULTS.sessionTimeoutMs);
  assert.equal(displayUrl(o), 'kafka://127.0.0.1:9092');
});

test('more brokers, a default port, tuning from the query; an options object wins', () => {
  const o = parseKafkaUrl(new URL('kafka://a?brokers=b:1,c:2&sessionTimeoutMs=4000&heartbeatIntervalMs=400&clientId=x'), {
    drainTimeoutMs: 5,
  });
  assert.deepEqual(o.brokers, ['a:9092', 'b:1', 'c:2']);
  assert.equal(o.sessionTimeoutMs, 4000);
  assert.equal(o.heartbeatIntervalMs, 400);
  assert.equal(o.clientId, 'x');
  assert.equal(o.drainTimeoutMs, 5);
});

test('SASL from user:password@ (percent-decoded) or the query, and TLS with PEM files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-kafka-opts-'));
  try {
    writeFileSync(join(dir, 'ca.pem'), 'CA-PEM');
    const o = parseKafkaUrl(new URL(`kafkas://alice:p%40ss@h:9093?sasl=scram-sha-512&ca=${join(dir, 'ca.pem')}&servername=kafka.example`));
    assert.deepEqual(o.sasl, { mechanism: 'scram-sha-512', username: 'alice', password: 'p@ss' });
    assert.deepEqual(o.ssl, { ca: 'CA-PEM', servername: 'kafka.example' });
    assert.equal(displayUrl(o), 'kafkas://h:9093', 'credentials never show in the URL');
    const q = parseKafkaUrl(new URL('kafka://h:1?tls=1&sasl=plain&username=u&password=p'));
    assert.equal(q.ssl, true);
    assert.deepEqual(q.sasl, { mechanism: 'plain', username: 'u', password: 'p' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad URLs are refused with the field and the problem', () => {
  assert.throws(() => parseKafkaUrl(new URL('http://h:1')), /scheme must be kafka/);
  assert.throws(() => parseKafkaUrl(new URL('kafka://h:1?sasl=gssapi&username=u&password=p')), /sasl must be one of/);
  assert.throws(() => parseKafkaUrl(new URL('kafka://h:1?sasl=plain')), /needs a username and a password/);
  assert.throws(() => parseKafkaUrl(new URL('kafka://h:1?sessionTimeoutMs=abc')), /sessionTimeoutMs must be a positive number/);
  assert.throws(() => parseKafkaUrl(new URL('kafka://h:1?tls=maybe')), /tls must be true or false/);
  assert.throws(() => parseKafkaUrl(new URL('kafka://h:1?ca=/nonexistent/ca.pem')), /cannot read the ca file \/nonexistent\/ca.pem/);
  assert.throws(() => parseKafkaUrl(new URL('kafka://h:1?sessionTimeoutMs=1000&heartbeatIntervalMs=2000')), /heartbeatIntervalMs/);
});
