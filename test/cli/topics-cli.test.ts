import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'dice-cli-topics-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
const bus = `embedded:${join(dir, 'bus.db')}`;

function dice(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/dice.mjs', ...args, '--bus', bus], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('dice topics create / produce / tail / topics list on the embedded bus', () => {
  const created = dice('topics', 'create', '--namespace', 'r1');
  assert.equal(created.status, 0, created.stderr);
  assert.match(created.stdout, /r1\.samples {2}4 partitions/);
  assert.match(created.stdout, /r1\.dead-letter {2}1 partition\b/);

  const file = join(dir, 'prompts.jsonl');
  writeFileSync(
    file,
    [
      JSON.stringify({ promptId: 'a', prompt: 'Write a haiku ✓', source: 'cli-test', arrivalTime: 1 }),
      JSON.stringify({ promptId: 'b', text: 5 }),
      JSON.stringify({ messages: [{ role: 'user', content: 'hello 😀' }] }),
    ].join('\n'),
  );
  const produced = dice('produce', '--topic', 'r1.prompts', '--file', file);
  assert.equal(produced.status, 0, produced.stderr);
  assert.match(produced.stdout, /3 records in .*prompts\.jsonl: produced 2 to r1\.prompts, 1 dead-lettered → r1\.dead-letter/);
  assert.match(produced.stderr, /prompts\.jsonl:2: prompts: text: expected a string, got the number 5/);

  const tailed = dice('tail', '--topic', 'r1.prompts', '--from-beginning', '--until-end', '--json');
  assert.equal(tailed.status, 0, tailed.stderr);
  const records = tailed.stdout.trim().split('\n').map((l) => JSON.parse(l));
  const byKey = new Map(records.map((r) => [r.key, r.value]));
  assert.equal(records.length, 2);
  assert.deepEqual(byKey.get('a'), { promptId: 'a', text: 'Write a haiku ✓', messages: null, source: 'cli-test', arrivalTime: 1 });
  const derived = byKey.get('prompts.jsonl:2');
  assert.ok(derived, `a prompt without an id gets file:index (${[...byKey.keys()]})`);
  assert.deepEqual(derived.messages, [{ role: 'user', content: 'hello 😀' }]);
  assert.equal(derived.source, 'prompts.jsonl');

  const dead = dice('tail', '--topic', 'r1.dead-letter', '--from-beginning', '--until-end', '--json');
  assert.equal(dead.status, 0, dead.stderr);
  const letter = JSON.parse(dead.stdout.trim()).value;
  assert.equal(letter.sourceTopic, 'r1.prompts');
  assert.match(letter.error, /prompts\.jsonl:2: prompts: text: expected a string/);
  assert.equal(Buffer.from(letter.value, 'base64').toString(), JSON.stringify({ promptId: 'b', text: 5 }));

  const listed = dice('topics', 'list');
  assert.equal(listed.status, 0, listed.stderr);
  assert.match(listed.stdout, /r1\.prompts\s+4\s+2\s/);
  assert.match(listed.stdout, /r1\.dead-letter\s+1\s+1\s/);

  const bad = dice('produce', '--topic', 'nonsense', '--file', file);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /unknown topic "nonsense"/);
  const badBus = spawnSync(process.execPath, ['bin/dice.mjs', 'topics', 'list', '--bus', 'redis://x'], { encoding: 'utf8' });
  assert.equal(badBus.status, 1);
  assert.match(badBus.stderr, /unknown bus URL "redis:\/\/x": use embedded:PATH/);
});
