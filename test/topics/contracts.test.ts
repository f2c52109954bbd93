import test from 'node:test';
import assert from 'node:assert/strict';
import { promptsTopic, type PromptRecord } from '../../topics/prompts.ts';
import { samplesTopic, type SamplesGroup } from '../../topics/samples.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { pairsTopic, type PreferencePair } from '../../topics/pairs.ts';
import { offlineTopic, type OfflinePair } from '../../topics/offline.ts';
import { batchesTopic, type TrainingBatch } from '../../topics/batches.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { metricsTopic, type MetricEvent } from '../../topics/metrics.ts';
import { deadLetterTopic, type DeadLetter } from '../../topics/dead-letter.ts';
import { TopicValidationError } from '../../topics/codec.ts';
import { charLength } from '../../topics/common.ts';
import { contractFor, topicContracts, topicName, parseTopicName } from '../../topics/registry.ts';

const unicode = 'Ça marche ✓ — 数学 😀 e\u0301';
const ids = (n: number, seed = 1) => Int32Array.from({ length: n }, (_, i) => ((i * 2654435761 + seed) | 0));

function samplesGroup(k = 3): SamplesGroup {
  return {
    promptId: 'p-😀-1',
    prompt: `<|user|>${unicode}`,
    promptTokenIds: Int32Array.from([2147483647, -2147483648, 0, 7]),
    round: 2,
    policyVersion: 5,
    runSeed: 4294967295,
    responses: Array.from({ length: k }, (_, i) => {
      const text = `${unicode} #${i}`;
      const tokenIds = ids(5 + i, i);
      return {
        k: i,
        seed: 4000000000 + i,
        tokenIds,
        text,
        charLength: charLength(text),
        tokenLength: tokenIds.length,
        finishReason: i % 2 ? 'length' : 'eos',
        policyLogp: [-0, -123.45678901234567, -5e-324][i % 3] - i * 0.1,
      };
    }),
  };
}

function roundTrip<T>(contract: { encode(v: T): Uint8Array; decode(b: Uint8Array): T }, value: T): void {
  const bytes = contract.encode(value);
  assert.deepStrictEqual(contract.decode(bytes), value);
}

test('charLength counts code points (Python len)', () => {
  assert.equal(charLength('😀ab'), 3);
  assert.equal(charLength('e\u0301'), 2);
  assert.equal(charLength(''), 0);
});

test('every data topic round-trips every field exactly (floats bit for bit, int32 ids, unicode)', () => {
  const prompt: PromptRecord = { promptId: 'p1', text: unicode, messages: null, source: 'test', arrivalTime: 1700000000123 };
  roundTrip(promptsTopic, prompt);
  roundTrip(promptsTopic, { ...prompt, text: null, messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: unicode }] });
  const g = samplesGroup();
  roundTrip(samplesTopic, g);
  const decoded = samplesTopic.decode(samplesTopic.encode(g));
  assert.ok(decoded.responses[0].tokenIds instanceof Int32Array);
  assert.ok(Object.is(decoded.responses[0].policyLogp, -0), '-0 survives');
  const scored: ScoredGroup = {
    ...g,
    referenceVersion: 4,
    beta: 0.1,
    responses: g.responses.map((r, i) => ({ ...r, refLogp: -100.1 - i / 3, reward: 0.1 * (r.policyLogp - (-100.1 - i / 3)) })),
  };
  roundTrip(scoredTopic, scored);
  const pair: PreferencePair = {
    pairId: 'pair-1',
    promptId: 'p1',
    prompt: unicode,
    promptTokenIds: ids(4),
    round: 1,
    windowId: 3,
    alpha: 0.0123456789,
    source: 'generated',
    chosen: { text: 'a😀', tokenIds: ids(3), charLength: 2, tokenLength: 3, logp: -1 / 3, reward: 0.7 },
    rejected: { text: 'bbbb', tokenIds: ids(6), charLength: 4, tokenLength: 6, logp: -2 / 3, reward: -0.2 },
  };
  roundTrip(pairsTopic, pair);
  roundTrip(pairsTopic, { ...pair, source: 'offline', alpha: null, windowId: null, chosen: { ...pair.chosen, reward: null } });
  const offline: OfflinePair = {
    pairId: 'o1',
    prompt: unicode,
    chosen: null,
    rejected: 'no',
    chosenMessages: [{ role: 'user', content: unicode }, { role: 'assistant', content: 'yes ✓' }],
    rejectedMessages: null,
    source: 'ultrafeedback',
  };
  roundTrip(offlineTopic, offline);
  const batch: TrainingBatch = {
    round: 1,
    step: 299,
    runId: 'run-1',
    rows: [
      { pairId: 'a', source: 'generated', promptTokenIds: ids(3), chosenTokenIds: ids(4), rejectedTokenIds: ids(5), chosenRefLogp: -10.5, rejectedRefLogp: -1e300 },
      { pairId: 'b', source: 'offline', promptTokenIds: ids(0), chosenTokenIds: ids(1), rejectedTokenIds: ids(2), chosenRefLogp: -Math.PI, rejectedRefLogp: -Math.E },
    ],
  };
  roundTrip(batchesTopic, batch);
  const letter: DeadLetter = { sourceTopic: 'samples', partition: 3, offset: 2 ** 40, key: null, error: 'samples: x: bad', value: new Uint8Array([0, 255, 1]), time: 1.7e12 };
  roundTrip(deadLetterTopic, letter);
});

test('JSON topics round-trip and keep free fields', () => {
  const cp: Checkpoint = {
    version: 3,
    parentVersion: 2,
    referenceVersion: 1,
    round: 2,
    location: '/runs/a/checkpoints/3',
    sha256: 'a'.repeat(64),
    metrics: { loss: 0.6931471805599453, rewardAccuracy: 0.75 },
    createdAt: 1700000000000,
  };
  roundTrip(checkpointsTopic, cp);
  roundTrip(checkpointsTopic, { ...cp, version: 0, parentVersion: null, referenceVersion: null });
  const m: MetricEvent = { stage: 'score', type: 'group', time: 1.7e12, round: 1, meanReward: 0.25, note: unicode, ok: true, missing: null };
  roundTrip(metricsTopic, m);
  assert.equal(metricsTopic.keyOf(m), 'score');
  assert.equal(checkpointsTopic.keyOf(cp), '3');
});

test('validation names the field and the problem', () => {
  const g = samplesGroup();
  const bad = (value: unknown, field: string, problem: RegExp, contract: { validate(v: unknown, l?: object): unknown } = samplesTopic, limits?: object) => {
    assert.throws(
      () => contract.validate(value, limits),
      (e: unknown) => e instanceof TopicValidationError && e.field === field && problem.test(e.problem),
      `${field} ${problem}`,
    );
  };
  const { round: _omit, ...noRound } = g;
  bad(noRound, 'round', /is missing/);
  bad({ ...g, round: 'two' }, 'round', /expected an integer, got the string "two"/);
  bad({ ...g, round: 2.5 }, 'round', /expected an integer/);
  bad({ ...g, policyVersion: 2 ** 31 }, 'policyVersion', /out of range for int32/);
  bad({ ...g, runSeed: -1 }, 'runSeed', /out of range for uint32/);
  bad({ ...g, extra: 1 }, 'extra', /is not a field/);
  bad({ ...g, responses: [{ ...g.responses[0], tokenIds: [1, 'x'] }] }, 'responses[0].tokenIds[1]', /expected an int32 token id/);
  bad({ ...g, responses: [{ ...g.responses[0], finishReason: 'stop' }] }, 'responses[0].finishReason', /must be one of 'eos', 'length'/);
  bad({ ...g, responses: [{ ...g.responses[0], policyLogp: NaN }] }, 'responses[0].policyLogp', /must be finite/);
  bad({ ...g, responses: [{ ...g.responses[0], charLength: 1 }] }, 'responses[0].charLength', /the text has \d+ characters/);
  bad({ ...g, responses: [{ ...g.responses[0], tokenLength: 99 }] }, 'responses[0].tokenLength', /tokenIds has 5 ids/);
  bad({ ...g, responses: [g.responses[0], g.responses[0]] }, 'responses[1].k', /appears twice/);
  bad({ ...g, responses: [] }, 'responses', /at least one/);
  bad({ ...g, prompt: 'a\uD800b' }, 'prompt', /lone surrogate/);
  // Oversized payloads, with configurable limits.
  bad(g, 'responses[0].tokenIds', /over the limit of 4/, samplesTopic, { maxTokens: 4 });
  bad(g, 'prompt', /over the limit of 8/, samplesTopic, { maxStringBytes: 8 });
  bad(g, 'responses', /over the limit of 2/, samplesTopic, { maxListLength: 2 });
  assert.throws(() => samplesTopic.encode(g, { maxRecordBytes: 100 }), /samples: encoded record is \d+ bytes, over the limit of 100/);
  assert.throws(() => samplesTopic.decode(samplesTopic.encode(g), { maxRecordBytes: 100 }), /over the limit of 100/);
  // One-of rules and JSON topics.
  bad({ promptId: 'p', text: 'x', messages: [{ role: 'user', content: 'y' }], source: 's', arrivalTime: 1 }, 'messages', /exactly one/, promptsTopic);
  bad({ promptId: 'p', text: null, messages: [{ role: 'bot', content: 'y' }], source: 's', arrivalTime: 1 }, 'messages[0].role', /must be one of/, promptsTopic);
  bad({ version: 1, parentVersion: 0, referenceVersion: 0, round: 1, location: 'x', sha256: 'nothex', metrics: {}, createdAt: 1 }, 'sha256', /64 lowercase hex/, checkpointsTopic);
  bad({ version: 1, parentVersion: 0, referenceVersion: 0, round: 1, location: 'x', sha256: 'a'.repeat(64), metrics: { loss: 'low' }, createdAt: 1 }, 'metrics.loss', /finite number/, checkpointsTopic);
  bad({ stage: 's', type: 't', time: 1, round: null, nested: { a: 1 } }, 'nested', /free field/, metricsTopic);
  bad({ stage: 's', type: 't', round: null }, 'time', /is missing/, metricsTopic);
});

test('decode rejects non-UTF-8 text, foreign schemas and non-Arrow bytes', () => {
  const marker = 'MARKERTEXT';
  const bytes = promptsTopic.encode({ promptId: 'p', text: marker, messages: null, source: 's', arrivalTime: 1 });
  const at = Buffer.from(bytes).indexOf(marker);
  assert.ok(at > 0);
  const corrupted = bytes.slice();
  corrupted[at + 3] = 0xff;
  assert.throws(() => promptsTopic.decode(corrupted), (e: unknown) => e instanceof TopicValidationError && e.field === 'text' && /not valid UTF-8/.test(e.problem));
  assert.throws(() => samplesTopic.decode(bytes), /samples: \w+: is missing from the record|samples: .*has type/);
  assert.throws(() => promptsTopic.decode(new TextEncoder().encode('{"promptId":"p"}')), /prompts: not an Arrow IPC stream/);
  assert.throws(() => checkpointsTopic.decode(new Uint8Array([0x7b, 0xff, 0x7d])), /checkpoints: is not valid UTF-8/);
  assert.throws(() => metricsTopic.decode(new TextEncoder().encode('{"stage":')), /metrics: is not valid JSON/);
});

test('plain JSON input (JSONL lines, Hugging Face rows) is accepted and normalized', () => {
  const p = promptsTopic.validate({ promptId: 'p', prompt: 'hi', messages: null, source: 'hf', arrivalTime: 5 });
  assert.equal(p.text, 'hi');
  const o = offlineTopic.validate({
    prompt_id: 'abc',
    prompt: 'q',
    chosen: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'good' }],
    rejected: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'bad' }],
    score_chosen: 8,
    score_rejected: 2,
  });
  assert.equal(o.pairId, 'abc');
  assert.equal(o.chosen, null);
  assert.equal(o.chosenMessages?.[1].content, 'good');
  assert.equal(o.source, null);
  const s = samplesTopic.validate({ ...samplesGroup(1), promptTokenIds: [1, 2], responses: samplesGroup(1).responses.map((r) => ({ ...r, tokenIds: Array.from(r.tokenIds) })) });
  assert.ok(s.promptTokenIds instanceof Int32Array && s.responses[0].tokenIds instanceof Int32Array);
});

test('registry: namespaced names, contracts by name, default partitions', () => {
  assert.equal(topicName('run-7', 'samples'), 'run-7.samples');
  assert.equal(topicName(undefined, 'dead-letter'), 'dead-letter');
  assert.throws(() => topicName('bad ns', 'samples'), /namespace/);
  assert.deepEqual(parseTopicName('run-7.samples'), { namespace: 'run-7', base: 'samples' });
  assert.equal(parseTopicName('run-7.other'), null);
  assert.equal(contractFor('a.b.pairs'), pairsTopic);
  assert.throws(() => contractFor('nope'), /unknown topic "nope": expected one of prompts, samples/);
  assert.equal(Object.keys(topicContracts).length, 10);
  for (const c of Object.values(topicContracts)) assert.ok(c.defaultPartitions >= 1);
});
