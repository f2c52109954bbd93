import { strict as assert } from 'node:assert';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { archiveRun, type ArchiveManifest } from '../../src/archive/archive.ts';
import type { ProduceRecord, RecordPosition } from '../../topics/bus.ts';
import { openEmbeddedBus, type EmbeddedBus } from '../../topics/embedded.ts';
import { createPipelineTopics, topicContracts, topicName } from '../../topics/registry.ts';
import type { PreferencePair } from '../../topics/pairs.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { Checkpoint } from '../../topics/checkpoints.ts';
import type { MetricEvent } from '../../topics/metrics.ts';
import type { SamplesGroup } from '../../topics/samples.ts';

const NS = 'run1';
const enc = new TextEncoder();

function pair(i: number, source: 'generated' | 'offline'): PreferencePair {
  const chosen = `answer ${i} ✓ long enough`;
  const rejected = `no ${i}`;
  return {
    pairId: `pair-${i}`,
    promptId: `p${i}`,
    prompt: `question ${i}?`,
    promptTokenIds: Int32Array.from([1, 2, 3 + i]),
    round: 1,
    windowId: source === 'generated' ? i : null,
    alpha: source === 'generated' ? 0.0125 * (i + 1) : null,
    source,
    chosen: { text: chosen, tokenIds: Int32Array.from([5, 6, 7]), charLength: [...chosen].length, tokenLength: 3, logp: -3.5 - i, reward: source === 'generated' ? 0.25 : null },
    rejected: { text: rejected, tokenIds: Int32Array.from([8]), charLength: [...rejected].length, tokenLength: 1, logp: -1.25, reward: source === 'generated' ? -0.5 : null },
  };
}

const prompts: PromptRecord[] = [
  { promptId: 'p0', text: 'What is 2+2?', messages: null, source: 'arena', arrivalTime: 1_700_000_000_000 },
  { promptId: 'p1', text: null, messages: [{ role: 'user', content: 'Name a prime.' }], source: 'arena', arrivalTime: 1_700_000_000_500 },
  { promptId: 'p2', text: 'Spell "cat".', messages: null, source: 'api', arrivalTime: 1_700_000_001_000 },
];
const pairs = [pair(0, 'generated'), pair(1, 'generated'), pair(2, 'offline'), pair(3, 'generated'), pair(4, 'offline')];
const checkpoint: Checkpoint = {
  version: 1,
  parentVersion: 0,
  referenceVersion: 0,
  round: 1,
  location: '/runs/x/v1',
  sha256: 'ab'.repeat(32),
  metrics: { loss: 0.61, rewardAccuracy: 0.75 },
  createdAt: 1_700_000_002_000,
};
const group: SamplesGroup = {
  promptId: 'p0',
  prompt: '<user>What is 2+2?</user>',
  promptTokenIds: Int32Array.from([10, 11]),
  round: 1,
  policyVersion: 0,
  runSeed: 7,
  responses: ['4', 'four, since 2+2=4'].map((text, k) => ({
    k,
    seed: 1000 + k,
    tokenIds: Int32Array.from({ length: k + 1 }, (_, j) => 20 + j),
    text,
    charLength: text.length,
    tokenLength: k + 1,
    finishReason: 'eos' as const,
    policyLogp: -1.5 * (k + 1),
  })),
};
const metrics: MetricEvent[] = [
  { stage: 'alpha', type: 'window', time: 1_700_000_000_100, round: 1, alpha: 0.0125, lengthDiffBefore: 14.5, lengthDiffAfter: 0 },
  { stage: 'train', type: 'step', time: 1_700_000_000_200, round: 1, step: 3, loss: 0.66 },
  { stage: 'run', type: 'start', time: 1_700_000_000_000, round: null, note: 'hello' },
];

describe('dice archive → Parquet (read back with hyparquet)', () => {
  let dir: string;
  let bus: EmbeddedBus;
  let manifest: ArchiveManifest;
  const produced = new Map<string, { record: ProduceRecord; position: RecordPosition }[]>();

  async function produce(base: keyof typeof topicContracts, records: ProduceRecord[], namespace = NS): Promise<void> {
    const topic = topicName(namespace, base);
    const positions = await bus.produce(topic, records);
    const list = produced.get(topic) ?? [];
    records.forEach((record, i) => list.push({ record, position: positions[i] }));
    produced.set(topic, list);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dice-archive-'));
    bus = await openEmbeddedBus(join(dir, 'bus.db'));
    await createPipelineTopics(bus, NS);
    await createPipelineTopics(bus, 'other');
    await produce('prompts', prompts.map((p) => ({ key: p.promptId, value: topicContracts.prompts.encode(p), headers: { origin: 'test' } })));
    await produce('pairs', pairs.map((p) => ({ key: p.promptId, value: topicContracts.pairs.encode(p) })));
    await produce('checkpoints', [{ key: '1', value: topicContracts.checkpoints.encode(checkpoint) }]);
    await produce('metrics', metrics.map((m) => ({ key: m.stage, value: topicContracts.metrics.encode(m) })));
    // A record that breaks its contract is archived raw, with the reason.
    await produce('samples', [
      { key: group.promptId, value: topicContracts.samples.encode(group), partition: 0 },
      { key: 'bad', value: enc.encode('not arrow'), partition: 1 },
    ]);
    await produce('prompts', [{ key: 'elsewhere', value: topicContracts.prompts.encode({ ...prompts[0], promptId: 'elsewhere' }) }], 'other');
    manifest = await archiveRun({ bus, outDir: join(dir, 'archive'), namespace: NS, batchRecords: 2 });
  });

  after(async () => {
    await bus.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function readTopic(base: string): Promise<Record<string, any>[]> {
    // utf8: false keeps unannotated byte arrays (the raw values) as bytes; string columns stay strings.
    return parquetReadObjects({ file: await asyncBufferFromFile(join(dir, 'archive', `${base}.parquet`)), utf8: false });
  }

  it('writes one file per topic of the namespace, and a manifest', async () => {
    const files = (await readdir(join(dir, 'archive'))).sort();
    const bases = Object.keys(topicContracts).sort();
    assert.deepEqual(files, [...bases.map((b) => `${b}.parquet`), 'manifest.json'].sort());
    const onDisk = JSON.parse(await readFile(join(dir, 'archive', 'manifest.json'), 'utf8'));
    assert.deepEqual(onDisk, JSON.parse(JSON.stringify(manifest)));
    assert.equal(manifest.namespace, NS);
    const byTopic = new Map(manifest.topics.map((t) => [t.topic, t]));
    assert.equal(byTopic.get('run1.pairs')?.records, pairs.length);
    assert.equal(byTopic.get('run1.prompts')?.records, prompts.length);
    assert.equal(byTopic.get('run1.samples')?.decodeErrors, 1);
    assert.equal(byTopic.get('run1.samples')?.records, 2);
    assert.equal(byTopic.get('run1.scored')?.records, 0);
    assert.ok(!byTopic.has('other.prompts'), 'another namespace is not archived');
  });

  it('keeps every record raw: partition, offset, timestamp, key, headers and the exact value bytes', async () => {
    for (const [topic, list] of produced) {
      if (!topic.startsWith(`${NS}.`)) continue;
      const rows = await readTopic(topic.slice(NS.length + 1));
      assert.equal(rows.length, list.length, topic);
      const byPosition = new Map(rows.map((r) => [`${r.bus_partition}:${r.bus_offset}`, r]));
      for (const { record, position } of list) {
        const row = byPosition.get(`${position.partition}:${position.offset}`);
        assert.ok(row, `${topic} ${position.partition}:${position.offset} is in the archive`);
        assert.equal(typeof row.bus_offset, 'bigint');
        assert.equal(row.bus_key, record.key);
        assert.deepEqual(JSON.parse(row.bus_headers), record.headers ?? {});
        assert.deepEqual(new Uint8Array(row.bus_value), record.value, `${topic} value bytes`);
        assert.ok(row.bus_timestamp instanceof Date && Math.abs(row.bus_timestamp.getTime() - Date.now()) < 600_000);
      }
    }
  });

  it('decodes data topics into columns, flattening the pair sides', async () => {
    const rows = (await readTopic('pairs')).sort((a, b) => a.pairId.localeCompare(b.pairId));
    assert.equal(rows.length, pairs.length);
    rows.forEach((row, i) => {
      const p = pairs[i];
      assert.equal(row.pairId, p.pairId);
      assert.equal(row.alpha, p.alpha);
      assert.equal(row.windowId, p.windowId);
      assert.equal(row.source, p.source);
      assert.equal(row.round, p.round);
      assert.deepEqual(Array.from(row.promptTokenIds), Array.from(p.promptTokenIds));
      assert.equal(row.chosen_text, p.chosen.text);
      assert.equal(row.chosen_logp, p.chosen.logp);
      assert.equal(row.chosen_reward, p.chosen.reward);
      assert.equal(row.rejected_text, p.rejected.text);
      assert.equal(row.rejected_charLength, p.rejected.charLength);
      assert.deepEqual(Array.from(row.chosen_tokenIds), Array.from(p.chosen.tokenIds));
      assert.equal(row.decode_error, null);
    });
    const promptRows = (await readTopic('prompts')).sort((a, b) => a.promptId.localeCompare(b.promptId));
    assert.deepEqual(
      promptRows.map((r) => [r.promptId, r.text, r.messages, r.source, r.arrivalTime]),
      prompts.map((p) => [p.promptId, p.text, p.messages, p.source, p.arrivalTime]),
    );
  });

  it('keeps a group\'s responses as a nested list a reader can open', async () => {
    const [row] = (await readTopic('samples')).filter((r) => r.decode_error === null);
    assert.equal(row.promptId, group.promptId);
    assert.equal(row.policyVersion, group.policyVersion);
    assert.equal(row.runSeed, group.runSeed);
    assert.deepEqual(
      row.responses.map((r: any) => ({ ...r, tokenIds: Array.from(r.tokenIds) })),
      group.responses.map((r) => ({ ...r, tokenIds: Array.from(r.tokenIds) })),
    );
  });

  it('archives JSON topics with their free-form parts as JSON text', async () => {
    const [cp] = await readTopic('checkpoints');
    assert.equal(cp.version, checkpoint.version);
    assert.equal(cp.parentVersion, checkpoint.parentVersion);
    assert.equal(cp.sha256, checkpoint.sha256);
    assert.deepEqual(JSON.parse(cp.metrics), checkpoint.metrics);
    const m = await readTopic('metrics');
    assert.deepEqual(
      m.map((r) => ({ stage: r.stage, type: r.type, time: r.time, round: r.round, ...JSON.parse(r.fields) })),
      metrics,
    );
  });

  it('keeps a record its contract rejects, with the reason and null decoded columns', async () => {
    const [row] = (await readTopic('samples')).filter((r) => r.decode_error !== null);
    assert.equal(row.bus_key, 'bad');
    assert.equal(row.bus_partition, 1);
    assert.equal(new TextDecoder().decode(row.bus_value), 'not arrow');
    assert.match(row.decode_error, /samples: not an Arrow IPC stream/);
    assert.equal(row.promptId, null);
    assert.equal(row.responses, null);
  });

  it('cuts row groups at batchRecords', async () => {
    const meta = await parquetMetadataAsync(await asyncBufferFromFile(join(dir, 'archive', 'pairs.parquet')));
    assert.deepEqual(meta.row_groups.map((g) => Number(g.num_rows)), [2, 2, 1]);
  });

  it('refuses a namespace with no topics, naming what is there', async () => {
    await assert.rejects(archiveRun({ bus, outDir: join(dir, 'none'), namespace: 'missing' }), /no topics in namespace "missing".*run1\.pairs/);
  });
});

describe('which topics make up a run', () => {
  it("takes the namespace's topics, or the un-namespaced ones, never a broker's internal topics", async () => {
    const { runTopics } = await import('../../src/archive/archive.ts');
    const names = ['__consumer_offsets', '_schemas', 'prompts', 'metrics', 'a.prompts', 'a.metrics', 'ab.prompts', 'a.'];
    assert.deepEqual(runTopics(names, 'a'), ['a.metrics', 'a.prompts']);
    assert.deepEqual(runTopics(names), ['metrics', 'prompts']);
  });
});
