import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint, verifyCheckpoint } from '../../src/model/checkpoint.ts';
import { loadModel } from '../../src/model/load.ts';

const root = join(import.meta.dirname, '..', '..');
const dice = (...args: string[]) => execFileSync(process.execPath, [join(root, 'bin', 'dice.mjs'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const diceFails = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin', 'dice.mjs'), ...args], { encoding: 'utf8' });

test('dice train: DPO with --ref writes a checkpoint that verifies, loads and generates; corruption is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-train-'));
  try {
    const base = join(dir, 'base');
    dice('model', 'init', '--arch', 'tiny', '--out', base, '--seed', '3');
    const pairs = join(dir, 'pairs.jsonl');
    const records = [
      { id: 'a', prompt: 'Name a colour.', chosen: 'Blue.', rejected: 'I like many colours, for example' },
      { id: 'b', prompt: [{ role: 'user', content: 'Add 2 and 2.' }], chosen: [{ role: 'user', content: 'Add 2 and 2.' }, { role: 'assistant', content: '4' }], rejected: 'Five' },
    ];
    writeFileSync(pairs, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const out = join(dir, 'ckpt');
    const lines = dice('train', '--model', base, '--ref', base, '--pairs', pairs, '--loss', 'dpo', '--beta', '0.1', '--steps', '3', '--batch', '2', '--lr', '1e-3', '--warmup', '1', '--out', out, '--json')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.equal(lines.length, 4);
    assert.ok(Math.abs(lines[0].loss - Math.LN2) < 1e-4, `policy = reference at the first step: loss log 2, got ${lines[0].loss}`);
    assert.equal(lines[0].lr, 0);
    assert.ok(lines[2].loss < lines[0].loss, 'loss falls');
    const manifest = verifyCheckpoint(out);
    assert.equal(manifest.version, 'v1');
    assert.equal((manifest.metrics as { steps: number }).steps, 3);
    const ckpt = loadCheckpoint(out);
    const before = loadModel(base);
    const emb = 'model.embed_tokens.weight';
    assert.notDeepEqual(ckpt.weights.get(emb)!.data.slice(0, 64), before.weights.get(emb)!.data.slice(0, 64), 'weights changed');
    const gen = dice('generate', '--model', out, '--prompt', 'Name a colour.', '-k', '1', '--max-new-tokens', '4', '--json');
    assert.equal(JSON.parse(gen.trim().split('\n')[0]).samples.length, 1);

    const weights = join(out, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(weights, bytes);
    assert.throws(() => verifyCheckpoint(out), /model\.safetensors: corrupt checkpoint — sha256 .* does not match/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dice train: SFT from prompt/completion records; a pairs file without reference log-probs is refused naming the record', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-train-'));
  try {
    const base = join(dir, 'base');
    dice('model', 'init', '--arch', 'tiny', '--out', base, '--seed', '4');
    const data = join(dir, 'sft.jsonl');
    writeFileSync(data, [{ prompt: 'Say hi.', completion: 'Hi!' }, { prompt: 'Say bye.', completion: 'Bye!' }].map((r) => JSON.stringify(r)).join('\n') + '\n');
    const lines = dice('train', '--model', base, '--pairs', data, '--loss', 'sft', '--steps', '4', '--batch', '2', '--lr', '1e-2', '--warmup', '0', '--out', join(dir, 'sft'), '--json')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(lines[3].loss < lines[0].loss, `SFT NLL falls: ${lines[0].loss} → ${lines[3].loss}`);
    verifyCheckpoint(join(dir, 'sft'));

    const pairs = join(dir, 'pairs.jsonl');
    writeFileSync(pairs, JSON.stringify({ prompt: 'x', chosen: 'a', rejected: 'b' }) + '\n');
    const bad = diceFails('train', '--model', base, '--pairs', pairs, '--steps', '1', '--out', join(dir, 'bad'));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /pairs\.jsonl:1: no reference log-probs/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
