import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const dice = (...args: string[]) => execFileSync(process.execPath, [join(root, 'bin', 'dice.mjs'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

test('dice generate → dice score: the scorer reproduces the sampler’s log-probs; text records work; bad records are named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-gen-'));
  try {
    const model = join(dir, 'm');
    dice('model', 'init', '--arch', 'tiny', '--out', model, '--seed', '1');
    const prompts = join(dir, 'prompts.jsonl');
    writeFileSync(prompts, [{ id: 'p1', prompt: 'Name a colour.' }, { id: 'p2', prompt: [{ role: 'user', content: 'Count to 3' }] }].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const gen = (seed: string) => dice('generate', '--model', model, '--prompts', prompts, '-k', '3', '--seed', seed, '--temperature', '0.8', '--top-p', '0.95', '--max-new-tokens', '10', '--json').trim().split('\n').map((l) => JSON.parse(l));
    const out = gen('5');
    assert.deepEqual(out.map((r) => r.promptId), ['p1', 'p2']);
    assert.deepEqual(gen('5'), out, 'same seed, same samples');
    assert.notDeepEqual(gen('6').map((r) => r.samples.map((s: { tokenIds: number[] }) => s.tokenIds)), out.map((r) => r.samples.map((s: { tokenIds: number[] }) => s.tokenIds)));
    for (const r of out) {
      assert.equal(r.samples.length, 3);
      for (const s of r.samples) assert.equal(typeof s.text, 'string');
    }
    const input = join(dir, 'score.jsonl');
    const rows = out.flatMap((r) => r.samples.map((s: { k: number; tokenIds: number[] }) => ({ id: `${r.promptId}/${s.k}`, prompt_token_ids: r.promptTokenIds, response_token_ids: s.tokenIds })));
    writeFileSync(input, rows.map((r) => JSON.stringify(r)).join('\n') + '\n' + JSON.stringify({ id: 'text', prompt: 'Name a colour.', response: 'Blue.' }) + '\n');
    const scored = dice('score', '--model', model, '--input', input, '--json').trim().split('\n').map((l) => JSON.parse(l));
    const expected = out.flatMap((r) => r.samples.map((s: { logProb: number }) => s.logProb));
    expected.forEach((lp, i) => assert.ok(Math.abs(scored[i].logProb - lp) <= 1e-4, `${scored[i].id}: ${scored[i].logProb} vs ${lp}`));
    const text = scored.at(-1);
    assert.equal(text.id, 'text');
    assert.ok(text.logProb < 0 && text.responseTokens >= 2, 'text response scored with EOS appended');

    writeFileSync(input, JSON.stringify({ prompt: 'x' }) + '\n');
    const bad = spawnSync(process.execPath, [join(root, 'bin', 'dice.mjs'), 'score', '--model', model, '--input', input], { encoding: 'utf8' });
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /score\.jsonl:1: needs "response"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
