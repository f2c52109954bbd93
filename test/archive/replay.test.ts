import { strict as assert } from 'node:assert';
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileDigest, type ArchiveManifest } from '../../src/archive/archive.ts';
import { readArchivedTopic } from '../../src/archive/read-archive.ts';
import { archiveBatch } from '../../src/archive/table.ts';
import { writeParquetFile } from '../../src/archive/parquet-file.ts';
import type { VerifyReport } from '../../src/archive/verify.ts';
import { sha256File } from '../../src/model/checkpoint.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import type { BusRecord } from '../../topics/bus.ts';
import { checkpointsTopic, type Checkpoint } from '../../topics/checkpoints.ts';
import { openBus } from '../../topics/open-bus.ts';
import { markersTopic, promptOrdersOf } from '../../topics/markers.ts';
import { pairsTopic } from '../../topics/pairs.ts';
import { promptsTopic } from '../../topics/prompts.ts';
import { topicName } from '../../topics/registry.ts';
import { samplesTopic } from '../../topics/samples.ts';
import { scoredTopic } from '../../topics/scored.ts';
import { makeRunFixture, runCli } from '../service/run-helpers.ts';

/**
 * dice replay over a real 2-round seeded run (tiny random models, embedded bus), archived with
 * dice archive: --verify on the untouched archive, on a copy with one pairs record altered, a
 * --from-stage re-run with another α rule, and a plain re-run.
 */

const fixture = makeRunFixture();
// two engine batches per round (4 prompts, 2 per call), so the batches depend on the round's prompt order
fixture.args.push('--set', 'sampling.promptsPerCall=2');
const runDir = join(fixture.dir, 'run');
const archive = join(fixture.dir, 'archive');

async function archived(dir: string, base: string): Promise<BusRecord[]> {
  return readArchivedTopic(join(dir, `${base}.parquet`), `run.${base}`);
}

async function recordedCheckpoints(): Promise<Map<number, Checkpoint>> {
  return new Map((await archived(archive, 'checkpoints')).map((r) => checkpointsTopic.decode(r.value)).map((c) => [c.version, c]));
}

/** Writes a file's new sha256 into the archive manifest, as someone editing an archive on purpose would. */
async function reseal(dir: string, file: string): Promise<void> {
  const path = join(dir, 'manifest.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as ArchiveManifest;
  Object.assign(manifest.topics.find((t) => t.file === file)!, await fileDigest(join(dir, file)));
  writeFileSync(path, JSON.stringify(manifest));
}

function parseReport(stdout: string): VerifyReport {
  return JSON.parse(stdout) as VerifyReport;
}

describe('dice replay', () => {
  before(async () => {
    const r = await runCli([...fixture.args, '--out', runDir]);
    assert.equal(r.code, 0, r.stderr);
    const a = await runCli(['archive', '--bus', `embedded:${join(runDir, 'bus.db')}`, '--namespace', 'run', '--out', archive]);
    assert.equal(a.code, 0, a.stderr);
  });

  after(() => rmSync(fixture.dir, { recursive: true, force: true }));

  it('--verify re-derives every stage of both rounds identically, checkpoint sha256 included', async () => {
    const work = join(fixture.dir, 'verify-work');
    const r = await runCli(['replay', '--from', archive, '--verify', '--json', '--out', work]);
    assert.equal(r.code, 0, r.stderr);
    const report = parseReport(r.stdout);
    assert.equal(report.identical, true);
    assert.deepEqual(
      report.stages.map((v) => [v.round, v.stage, v.identical]),
      [1, 2].flatMap((round) => ['samples', 'scored', 'pairs', 'batches', 'checkpoints'].map((stage) => [round, stage, true])),
    );
    // the run recorded each round's prompt order (file order), which the 4-partition prompts topic does not keep
    const prompts = (await archived(archive, 'prompts')).map((r) => promptsTopic.decode(r.value));
    const idOf = new Map(prompts.map((p) => [p.text, p.promptId]));
    const fileOrder = Array.from({ length: 8 }, (_, i) => idOf.get(`Reverse the word cat${i}.`)!);
    const orders = promptOrdersOf((await archived(archive, 'markers')).map((r) => markersTopic.decode(r.value)));
    assert.deepEqual([orders.get(1), orders.get(2)], [fileOrder.slice(0, 4), fileOrder.slice(4)]);
    assert.notDeepEqual(prompts.map((p) => p.promptId), fileOrder, 'the bus order differs from the run order (else this test proves nothing about it)');
    // every stage compared real records: 4 prompts per round, 3 steps, one checkpoint
    for (const v of report.stages) assert.equal(v.records, ({ samples: 4, scored: 4, pairs: 4, batches: 3, checkpoints: 1 } as Record<string, number>)[v.stage], `${v.stage} r${v.round}`);
    // the re-trained weights themselves hash to the recorded checkpoints
    const recorded = await recordedCheckpoints();
    for (const version of [1, 2]) assert.equal(sha256File(join(work, `v${version}`, 'model.safetensors')), recorded.get(version)!.sha256);
  });

  it('after one recorded pair is altered, the first difference is at the pairs stage (and batches re-derived from it), not before', async () => {
    const altered = join(fixture.dir, 'archive-altered');
    cpSync(archive, altered, { recursive: true });
    const records = await archived(altered, 'pairs');
    // swap chosen and rejected of one round-1 pair whose sides differ in text
    const index = records.findIndex((r) => {
      const p = pairsTopic.decode(r.value);
      return p.round === 1 && p.chosen.text !== p.rejected.text;
    });
    assert.ok(index >= 0, 'a round-1 pair with two different texts');
    const original = pairsTopic.decode(records[index].value);
    records[index] = { ...records[index], value: pairsTopic.encode({ ...original, chosen: original.rejected, rejected: original.chosen }) };
    await writeParquetFile(join(altered, 'pairs.parquet'), (async function* () {
      yield archiveBatch(records, pairsTopic);
    })(), { createdBy: 'replay test', maxRowGroupRows: 4096 });
    await reseal(altered, 'pairs.parquet'); // a deliberate edit, sealed again: verify must localise it by re-derivation

    const r = await runCli(['replay', '--from', altered, '--verify', '--json', '--verify-rounds', '1']);
    assert.equal(r.code, 1, `exit status 1 when a stage differs\n${r.stderr}`);
    const report = parseReport(r.stdout);
    assert.equal(report.identical, false);
    const byStage = new Map(report.stages.map((v) => [v.stage, v]));
    assert.equal(byStage.get('samples')!.identical, true);
    assert.equal(byStage.get('scored')!.identical, true);
    const pairs = byStage.get('pairs')!;
    assert.equal(report.stages.find((v) => !v.identical)!.stage, 'pairs', 'the first differing stage');
    assert.equal(pairs.differing, 1);
    assert.deepEqual(pairs.first, { key: original.promptId, path: 'chosen.text', recorded: original.rejected.text, rederived: original.chosen.text });
    // batches are re-derived from the (altered) recorded pairs, so they no longer match the recorded batches…
    const batches = byStage.get('batches')!;
    assert.equal(batches.identical, false);
    assert.match(batches.first!.path, /^rows\[\d+\]\.(chosenTokenIds|rejectedTokenIds)\[\d+\]$|^rows\[\d+\]\.(chosen|rejected)TokenIds\.length$/);
    // …while training from the recorded batches still gives the recorded v1
    assert.equal(byStage.get('checkpoints')!.identical, true);
  });

  // This seed's recorded round-1 α* is 0 (the length difference is already closest to 0 there), so the new rule is a fixed α = 0.05.
  it('--from-stage scored --alpha 0.05 re-pairs the recorded round-1 groups with another α into a new run', async () => {
    const out = join(fixture.dir, 'alpha-fixed');
    const r = await runCli(['replay', '--from', archive, '--out', out, '--from-stage', 'scored', '--alpha', '0.05', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { taken: Record<string, number>; checkpoints: Array<{ version: number; sha256: string }> };
    assert.deepEqual(result.taken, { prompts: 8, samples: 4, scored: 4 });
    assert.deepEqual(result.checkpoints.map((c) => c.version), [1, 2]);
    const recordedCps = await recordedCheckpoints();
    assert.notEqual(result.checkpoints[0].sha256, recordedCps.get(1)!.sha256, 'round 1 trained on other pairs: a new v1');

    const recordedPairs = (await archived(archive, 'pairs')).map((x) => pairsTopic.decode(x.value));
    const recordedScored = (await archived(archive, 'scored')).filter((x) => scoredTopic.decode(x.value).round === 1);
    const recordedSamples = (await archived(archive, 'samples')).map((x) => samplesTopic.decode(x.value));
    const bus = await openBus(`embedded:${join(out, 'bus.db')}`);
    try {
      const T = (base: 'pairs' | 'scored' | 'samples') => topicName('replay', base);
      const pairs = await readWholeTopic(bus, T('pairs'), pairsTopic);
      const r1 = pairs.filter((p) => p.round === 1);
      const recordedR1 = recordedPairs.filter((p) => p.round === 1);
      assert.equal(r1.length, recordedR1.length);
      assert.ok(recordedR1.every((p) => p.alpha !== 0.05), `the recorded round-1 α* differs from the new α (got ${recordedR1[0].alpha})`);
      for (const p of r1) assert.equal(p.alpha, 0.05);
      // a length penalty this large makes the shortest response win: some recorded pair changes sides
      const recordedChosen = new Map(recordedR1.map((p) => [p.promptId, p.chosen.text]));
      assert.ok(r1.some((p) => p.chosen.text !== recordedChosen.get(p.promptId)), 'α changed which response is chosen');
      // and the new pairs are ordered by the shaped reward r − 0.05·|y|
      const shaped = (s: { reward: number | null; charLength: number }) => s.reward! - 0.05 * s.charLength;
      for (const p of r1) assert.ok(shaped(p.chosen) >= shaped(p.rejected), `${p.promptId}: chosen by r − 0.05|y|`);
      // round 1 took the recorded scored groups, byte for byte, and did not sample again
      const scored = await readWholeTopic(bus, T('scored'), scoredTopic);
      const newR1 = scored.filter((g) => g.round === 1).map((g) => Buffer.from(scoredTopic.encode(g)).toString('hex')).sort();
      assert.deepEqual(newR1, recordedScored.map((x) => Buffer.from(x.value).toString('hex')).sort());
      const samples = await readWholeTopic(bus, T('samples'), samplesTopic);
      assert.equal(samples.filter((g) => g.round === 1).length, 4);
      // round 2 ran in full from the new v1, on the prompts the recorded round 2 had
      const r2 = samples.filter((g) => g.round === 2);
      assert.ok(r2.length === 4 && r2.every((g) => g.policyVersion === 1));
      assert.deepEqual(r2.map((g) => g.promptId).sort(), recordedSamples.filter((g) => g.round === 2).map((g) => g.promptId).sort());
      const cps = await readWholeTopic(bus, topicName('replay', 'checkpoints'), checkpointsTopic);
      assert.deepEqual(cps.map((c) => c.version).sort(), [-1, 0, 1, 2]);
    } finally {
      await bus.close();
    }

    // the new run is itself a recorded run: its round 1 (taken and re-run parts) verifies against its own config
    const v = await runCli(['replay', '--from', out, '--from-namespace', 'replay', '--verify', '--verify-rounds', '1', '--json']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(parseReport(v.stdout).identical, true);
  });

  it('a plain replay of the run directory reproduces v1 and v2 bit for bit', async () => {
    const out = join(fixture.dir, 'again');
    const r = await runCli(['replay', '--from', runDir, '--out', out, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const result = JSON.parse(r.stdout) as { checkpoints: Array<{ version: number; sha256: string; identical: boolean }> };
    const recorded = await recordedCheckpoints();
    assert.deepEqual(result.checkpoints.map((c) => [c.version, c.sha256, c.identical]), [1, 2].map((v) => [v, recorded.get(v)!.sha256, true]));
  });

  it('refuses checkpoints that are gone or altered, naming the file', async () => {
    const recorded = await recordedCheckpoints();
    const base = recorded.get(0)!.location;
    const r = await runCli(['replay', '--from', archive, '--out', join(fixture.dir, 'gone'), '--relocate', `${base}=${join(fixture.dir, 'nowhere')}`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /checkpoint v0: .*nowhere\/model\.safetensors \(recorded at .*\) is gone/);

    const copy = join(fixture.dir, 'base-copy');
    cpSync(base, copy, { recursive: true });
    writeFileSync(join(copy, 'model.safetensors'), 'not the weights');
    const altered = await runCli(['replay', '--from', archive, '--verify', '--relocate', `${base}=${copy}`]);
    assert.equal(altered.code, 1);
    assert.match(altered.stderr, /checkpoint v0: .*base-copy\/model\.safetensors .* has sha256 [0-9a-f]{64}, the recording says [0-9a-f]{64}: the weights were altered/);
    assert.ok(!existsSync(join(fixture.dir, 'gone', 'bus.db')), 'nothing was run');
  });

  it('a byte changed anywhere in an archive file (here two thirds into samples.parquet, past the raw columns) is refused by its sha256, before anything runs', async () => {
    const flipped = join(fixture.dir, 'archive-flipped');
    cpSync(archive, flipped, { recursive: true });
    const file = join(flipped, 'samples.parquet');
    const bytes = readFileSync(file);
    // The decoded columns follow the raw ones in the file; flip a byte two thirds of the way in.
    bytes[Math.floor(bytes.length * 0.66)] ^= 0x01;
    writeFileSync(file, bytes);
    const r = await runCli(['replay', '--from', flipped, '--verify', '--json']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /samples\.parquet: sha256 [0-9a-f]{64} \(\d+ bytes\) does not match [0-9a-f]{64} .* in .*manifest\.json: the file was altered or damaged/);
    assert.doesNotMatch(r.stderr, /^\s+at /m);
    assert.equal(r.stdout, '', 'no report: nothing was verified');
  });

  it('verify reports a final checkpoint whose file no longer matches its recorded sha256', async () => {
    const recorded = await recordedCheckpoints();
    const final = join(recorded.get(2)!.location, 'model.safetensors');
    const original = readFileSync(final);
    const altered = Buffer.from(original);
    altered[altered.length - 3] ^= 0x10;
    writeFileSync(final, altered);
    try {
      const r = await runCli(['replay', '--from', archive, '--verify', '--json', '--verify-rounds', '2', '--verify-stages', 'checkpoints']);
      assert.equal(r.code, 1, r.stderr);
      const verdict = parseReport(r.stdout).stages.find((v) => v.stage === 'checkpoints')!;
      assert.equal(verdict.identical, false);
      assert.equal(verdict.first!.path, 'location');
      assert.match(String(verdict.first!.rederived), /checkpoint v2: .*v2\/model\.safetensors has sha256 [0-9a-f]{64}, the recording says/);
    } finally {
      writeFileSync(final, original);
    }
  });
});
