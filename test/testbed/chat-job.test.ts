import test from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256File } from '../../src/model/checkpoint.ts';
import { writeInitModel } from '../../src/model/init.ts';
import { chatTasks, QUICK_CHAT_JOB } from '../../src/testbed/chat-job.ts';
import { checkTask, ifevalAccuracy } from '../../src/testbed/ifeval/tasks.ts';
import { runCli } from '../service/run-helpers.ts';

const root = mkdtempSync(join(tmpdir(), 'dice-chat-'));
const modelDir = join(root, 'tiny');
writeInitModel('tiny', modelDir, { seed: 3 });
const args = ['start', '--model', modelDir, '--quick', '--cache', join(root, 'cache'), '--work', join(root, 'work'), '--out', join(root, 'report')];

/** The printed table after `title` (header to the reference line). */
function printed(stdout: string, title: string): string {
  const lines = stdout.split('\n');
  const at = lines.findIndex((l) => l.startsWith(title));
  const from = lines.findIndex((l, i) => i > at && l.startsWith('Model'));
  const to = lines.findIndex((l, i) => i > from && l.startsWith('reference answers'));
  assert.ok(at >= 0 && from > at && to > from, `no "${title}" table in:\n${stdout}`);
  return lines.slice(from, to + 1).join('\n');
}

test('dice start --model DIR --quick: the real-model job end to end on a tiny model, accuracies from the checkers, resumable', async () => {
  const first = await runCli(args);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stderr, /projected time per seed/);
  assert.match(first.stderr, /"msg":"\[5\/5\] evaluation on the validation and test splits/);
  const testTable = printed(first.stdout, 'Test split');
  const models = testTable.split('\n').slice(2, -2).map((l) => l.split(/\s{2,}/)[0]);
  assert.deepEqual(models, ['Base (π_θ(0))', 'Offline DPO it1', 'Offline DPO it2', 'DICE it1', 'DICE it2', 'DICE α=0 it1', 'DICE α=0 it2']);
  printed(first.stdout, 'Validation split');
  assert.match(first.stdout, /mean ± s\.e\. over seeds/);

  const report = JSON.parse(readFileSync(join(root, 'report', 'report.json'), 'utf8'));
  const tasks = chatTasks(QUICK_CHAT_JOB);
  assert.equal(report.test.table.length, 7);
  // D_offline: one judged pair per train prompt with two distinct samples
  const bootDir = report.bootstrap.dir as string;
  const offline = readFileSync(join(bootDir, 'offline.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(offline.length + report.offline.skipped, QUICK_CHAT_JOB.bootstrap.prompts);
  for (const p of offline) assert.notEqual(p.chosen, p.rejected);
  // π_θ(0) and every checkpoint are trained models, not copies of π_ref(0)
  const weights = (dir: string) => sha256File(join(dir, 'model.safetensors'));
  const seen = new Set([weights(modelDir), weights(join(bootDir, 'dpo'))]);
  for (const run of report.runs) for (const c of run.checkpoints) seen.add(weights(c));
  assert.equal(seen.size, 2 + 6, 'every checkpoint has its own weights');

  // the accuracies in the table are the checkers' verdicts on the answers the job kept
  for (const split of ['validation', 'test'] as const) {
    const evalDir = readdirSync(join(root, 'work'))[0];
    const files = readdirSync(join(root, 'work', evalDir, 'eval', split));
    assert.equal(files.length, 7);
    const refAnswers = JSON.parse(readFileSync(join(bootDir, 'references.json'), 'utf8'))[split] as string[];
    assert.equal(refAnswers.length, tasks[split].length);
    for (const row of report[split].table) {
      const file = `${row.variant}-it${row.iteration}.json`;
      const kept = JSON.parse(readFileSync(join(root, 'work', evalDir, 'eval', split, file), 'utf8')) as { responses: string[]; promptOf: number[] };
      const items = kept.responses.map((response, i) => ({ task: tasks[split][kept.promptOf[i]], response }));
      const acc = ifevalAccuracy(items);
      assert.ok(Math.abs(row.extra['Prompt acc (%)'] - 100 * acc.promptLevel) < 1e-9, `${split} ${row.model}`);
      assert.ok(Math.abs(row.extra['Inst acc (%)'] - 100 * acc.instructionLevel) < 1e-9, `${split} ${row.model}`);
      assert.equal(row.n, tasks[split].length);
      assert.ok(row.lcWinRate >= 0 && row.lcWinRate <= 100 && Number.isFinite(row.lcStdErr) && row.lcStdErr >= 0);
      for (const k of ['p-acc s.e.', 'i-acc s.e.', 'Len s.e.', 'WR s.e.']) assert.ok(Number.isFinite(row.extra[k]) && row.extra[k] >= 0, `${row.model} ${k}`);
      assert.ok(items.every((it) => checkTask(it.task, it.response).length === it.task.constraints.length));
    }
  }
  const md = readFileSync(join(root, 'report', 'report.md'), 'utf8');
  assert.match(md, /## Validation split/);
  assert.match(md, /## D_offline/);
  assert.ok(existsSync(join(root, 'report', 'length-diff-r1.svg')) && existsSync(join(root, 'report', 'train-dice.svg')));

  // a rerun resumes: cached bootstrap, rounds already done, kept answers — and the same table
  const second = await runCli(args);
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /round already done/);
  assert.doesNotMatch(second.stderr, /D_offline: sampling/);
  assert.equal(printed(second.stdout, 'Test split'), testTable);
});
