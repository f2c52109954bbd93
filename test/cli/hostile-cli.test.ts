import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeInitModel } from '../../src/model/init.ts';
import { sha256File } from '../../src/model/checkpoint.ts';
import { ingestFile, promptDefaults } from '../../src/service/ingest.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { deadLetterTopic } from '../../topics/dead-letter.ts';
import { openEmbeddedBus } from '../../topics/embedded.ts';
import { promptsTopic } from '../../topics/prompts.ts';
import { createPipelineTopics } from '../../topics/registry.ts';

const DICE = join(import.meta.dirname, '..', '..', 'bin', 'dice.mjs');
const dir = mkdtempSync(join(tmpdir(), 'dice-hostile-cli-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

function dice(...args: string[]) {
  const r = spawnSync(process.execPath, [DICE, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** A stack trace line, which a user should never see from a refused input. */
const STACK = /^\s+at .+[:(]/m;

/** 700 good prompts with one of each kind of bad record placed among them (the bad ones after the first produce batch). */
function hostilePromptFile(path: string, fixed = false): { lines: number } {
  const lines: Buffer[] = [];
  const good = (i: number) => Buffer.from(JSON.stringify({ promptId: `g${i}`, text: `Prompt number ${i}` }));
  for (let i = 0; i < 700; i++) {
    lines.push(good(i));
    if (i === 550) lines.push(fixed ? Buffer.from('{"promptId":"x1","text":"was bad JSON"}') : Buffer.from('{"promptId": "x1", "text": "unterminated'));
    if (i === 551) lines.push(fixed ? Buffer.from('{"promptId":"x2","text":"was not UTF-8"}') : Buffer.concat([Buffer.from('{"promptId":"x2","text":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]));
    if (i === 552) lines.push(Buffer.from(fixed ? '{"promptId":"x3","text":"was an array"}' : '[1, 2]'));
    if (i === 553) lines.push(Buffer.from(JSON.stringify({ promptId: 'g0', text: 'a second g0' })));
    if (i === 554) lines.push(Buffer.from(JSON.stringify({ promptId: 'x5', text: 'plain', messages: [{ role: 'user', content: 'chat' }] })));
  }
  lines.push(Buffer.from(JSON.stringify({ text: 'no id: named by its position' })));
  writeFileSync(path, Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  return { lines: lines.length };
}

test('dice produce: one bad line costs that line only; every record is produced or dead-lettered with file:line; re-producing the fixed file duplicates nothing', async () => {
  const file = join(dir, 'prompts.jsonl');
  const { lines } = hostilePromptFile(file);
  const busFile = join(dir, 'produce.db');
  const r = dice('produce', '--topic', 'r.prompts', '--file', file, '--bus', `embedded:${busFile}`);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, STACK);
  assert.equal(lines, 706);
  assert.match(r.stdout, /^706 records in .*prompts\.jsonl: produced 701 to r\.prompts, 5 dead-lettered → r\.dead-letter$/m);
  assert.match(r.stderr, /prompts\.jsonl:552: invalid JSON/);
  assert.match(r.stderr, /prompts\.jsonl:554: is not valid UTF-8/);
  assert.match(r.stderr, /prompts\.jsonl:556: expected a JSON object per line, got an array/);
  assert.match(r.stderr, /prompts\.jsonl:558: duplicate key "g0": the record at .*prompts\.jsonl:1 has it/);
  assert.match(r.stderr, /prompts\.jsonl:560: has both "text" and "messages"/);

  const bus = await openEmbeddedBus(busFile);
  try {
    const prompts = await readWholeTopic(bus, 'r.prompts', promptsTopic);
    assert.equal(prompts.length, 701);
    assert.equal(new Set(prompts.map((p) => p.promptId)).size, 701);
    assert.equal(prompts.find((p) => p.promptId === 'g0')!.text, 'Prompt number 0', 'the first g0 wins');
    assert.ok(prompts.some((p) => p.promptId === 'prompts.jsonl:705'), 'an id-less record is named by its position, bad records counted');
    const dead = await readWholeTopic(bus, 'r.dead-letter', deadLetterTopic);
    assert.equal(dead.length, 5);
    assert.deepEqual(dead.map((d) => /prompts\.jsonl:(\d+)/.exec(d.error)?.[1]), ['552', '554', '556', '558', '560']);
    const notUtf8 = Buffer.concat([Buffer.from('{"promptId":"x2","text":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')]);
    assert.deepEqual(Buffer.from(dead[1].value), notUtf8, 'the line is kept byte for byte');
  } finally {
    await bus.close();
  }

  // The fixed file again: only the three repaired records are new; the rules still refuse the other two.
  hostilePromptFile(file, true);
  const again = dice('produce', '--topic', 'r.prompts', '--file', file, '--bus', `embedded:${busFile}`);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /706 records in .*: produced 3 to r\.prompts, 701 already there, 2 dead-lettered/);
  const bus2 = await openEmbeddedBus(busFile);
  try {
    assert.equal((await readWholeTopic(bus2, 'r.prompts', promptsTopic)).length, 704);
  } finally {
    await bus2.close();
  }

  // --strict: the same outcome, and a non-zero exit because something was dead-lettered.
  hostilePromptFile(file);
  const strict = dice('produce', '--topic', 'r.prompts', '--file', file, '--strict', '--bus', `embedded:${join(dir, 'strict.db')}`);
  assert.equal(strict.status, 1);
  assert.match(strict.stdout, /produced 701 to r\.prompts, 5 dead-lettered/);
  assert.doesNotMatch(strict.stderr, STACK);
});

test('ingestion for dice run: the first record of a promptId wins, later ones are dead-lettered, so the run samples what it says', async () => {
  const file = join(dir, 'dups.jsonl');
  writeFileSync(file, ['{"promptId":"a","text":"A"}', '{"promptId":"b","text":"B"}', '{"promptId":"a","text":"A again"}', '{"prompt":"C"}'].join('\n'));
  const bus = await openEmbeddedBus(join(dir, 'ingest.db'));
  try {
    await createPipelineTopics(bus, 'n');
    const r = await ingestFile(bus, 'n.prompts', 'n.dead-letter', promptsTopic, file, promptDefaults);
    assert.deepEqual(r.values.map((p) => [p.promptId, p.text]), [['a', 'A'], ['b', 'B'], ['dups.jsonl:3', 'C']]);
    assert.deepEqual([r.records, r.produced, r.alreadyPresent, r.deadLettered], [4, 3, 0, 1]);
    const dead = await readWholeTopic(bus, 'n.dead-letter', deadLetterTopic);
    assert.match(dead[0].error, /dups\.jsonl:3: duplicate key "a": the record at .*dups\.jsonl:1 has it/);
  } finally {
    await bus.close();
  }
});

test('dice tail and topics list: unknown topics and missing buses are errors, nothing is created, a closed pipe ends quietly', async () => {
  const busFile = join(dir, 'tail.db');
  const bus = await openEmbeddedBus(busFile);
  try {
    await bus.createTopic('r.prompts', { partitions: 1 });
    await bus.produce('r.prompts', Array.from({ length: 3000 }, (_, i) => ({ key: `p${i}`, value: promptsTopic.encode({ promptId: `p${i}`, text: `text ${i}`, messages: null, source: 's', arrivalTime: 0 }) })));
    for (let i = 0; i < 2500; i++) await bus.createTopic(`ns${i}.metrics`, { partitions: 1 });
  } finally {
    await bus.close();
  }
  const nosuch = dice('tail', '--topic', 'nosuch', '--until-end', '--bus', `embedded:${busFile}`);
  assert.equal(nosuch.status, 1);
  assert.match(nosuch.stderr, /unknown topic "nosuch"/);
  const absent = dice('tail', '--topic', 'r.samples', '--until-end', '--bus', `embedded:${busFile}`);
  assert.equal(absent.status, 1);
  assert.match(absent.stderr, /topic r\.samples does not exist on embedded:/);

  const missing = join(dir, 'nowhere', 'bus.db');
  for (const args of [['tail', '--topic', 'prompts', '--until-end'], ['topics', 'list']]) {
    const r = dice(...args, '--bus', `embedded:${missing}`);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, /nowhere\/bus\.db: no embedded bus there \(read-only commands never create one\)/);
    assert.doesNotMatch(r.stderr, STACK);
    assert.equal(existsSync(join(dir, 'nowhere')), false, `${args[0]} created nothing`);
  }

  for (const cmd of [`tail --topic r.prompts --from-beginning --until-end --bus embedded:${busFile}`, `topics list --bus embedded:${busFile}`]) {
    const piped = spawnSync('bash', ['-c', `"${process.execPath}" "${DICE}" ${cmd} | head -n 1; echo "status \${PIPESTATUS[0]}" >&2`], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(piped.stdout.trim().split('\n').length, 1, cmd);
    assert.doesNotMatch(piped.stderr, /EPIPE|Error/, cmd);
    assert.match(piped.stderr, /status 0/, cmd);
  }
});

test('a damaged embedded bus is an error naming the file and what to do, not an SqliteError stack trace', () => {
  const busFile = join(dir, 'tail.db');
  const damaged = join(dir, 'damaged.db');
  copyFileSync(busFile, damaged);
  const fd = openSync(damaged, 'r+');
  const junk = Buffer.alloc(8192);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) & 255;
  writeSync(fd, junk, 0, junk.length, 200_000);
  closeSync(fd);
  const before = sha256File(damaged);
  for (const args of [['topics', 'list'], ['tail', '--topic', 'r.prompts', '--from-beginning', '--until-end'], ['produce', '--topic', 'r.prompts', '--file', join(dir, 'dups.jsonl')]]) {
    const r = dice(...args, '--bus', `embedded:${damaged}`);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, /damaged\.db: the embedded bus is damaged \(.+\)\. Nothing was read from it\. Restore it from a copy, or move it/);
    assert.doesNotMatch(r.stderr, STACK);
    assert.doesNotMatch(r.stderr, /SqliteError/);
  }
  assert.equal(sha256File(damaged), before, 'the damaged file is left as it was');
});

test('dice train --version sets the checkpoint version; --out = --model is refused; corrupt checkpoints are refused by generate, score and model info', () => {
  const base = join(dir, 'base');
  writeInitModel('tiny', base, { seed: 3 });
  const pairs = join(dir, 'pairs.jsonl');
  writeFileSync(pairs, `${JSON.stringify({ prompt: 'Name a colour.', chosen: 'Blue.', rejected: 'Many' })}\n`);
  const out = join(dir, 'v0');
  const train = (o: string, ...extra: string[]) => dice('train', '--model', base, '--ref', base, '--pairs', pairs, '--steps', '1', '--batch', '1', '--out', o, ...extra);
  const t = train(out, '--version', 'v0');
  assert.equal(t.status, 0, t.stderr);
  assert.equal(JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')).version, 'v0');
  assert.match(dice('--version').stdout, /^\d+\.\d+\.\d+/);

  const weights = sha256File(join(base, 'model.safetensors'));
  for (const clash of [base, `${base}/`, join(base, '..', 'base')]) {
    const r = train(clash);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /is the --model directory: training would overwrite its input/);
  }
  assert.equal(sha256File(join(base, 'model.safetensors')), weights, 'the input is unchanged');

  const bytes = readFileSync(join(out, 'model.safetensors'));
  bytes[bytes.length - 9] ^= 0x40;
  writeFileSync(join(out, 'model.safetensors'), bytes);
  const scoreInput = join(dir, 'score.jsonl');
  writeFileSync(scoreInput, `${JSON.stringify({ prompt: 'Hi', response: 'there' })}\n`);
  for (const args of [['generate', '--model', out, '--prompt', 'Hi', '--max-new-tokens', '2'], ['score', '--model', out, '--input', scoreInput], ['model', 'info', '--model', out]]) {
    const r = dice(...args);
    assert.equal(r.status, 1, `${args[0]}: ${r.stdout}`);
    assert.match(r.stderr, /v0\/model\.safetensors: corrupt checkpoint — sha256 [0-9a-f]{64} does not match/, args[0]);
    assert.doesNotMatch(r.stderr, STACK, args[0]);
  }
});
