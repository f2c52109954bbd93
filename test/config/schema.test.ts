import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadRunConfig, parseRunConfig } from '../../src/config/schema.ts';

test('defaults are the paper defaults', () => {
  const c = parseRunConfig({});
  assert.equal(c.sampling.k, 16);
  assert.equal(c.reward.beta, 0.1);
  assert.equal(c.replay.gamma, 0.5);
  assert.equal(c.rounds, 2);
  assert.equal(c.train.steps, 300);
  assert.equal(c.train.batch, 32);
  assert.equal(c.train.warmupSteps, 50);
  assert.equal(c.sampling.temperature, 0.7);
  assert.equal(c.sampling.topP, 0.9);
});

test('file then flags, with errors naming the key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ sampling: { k: 4 }, train: { steps: 10 } }));
  const c = loadRunConfig(file, { 'train.steps': '20', 'replay.gamma': 0.25 });
  assert.equal(c.sampling.k, 4);
  assert.equal(c.train.steps, 20);
  assert.equal(c.replay.gamma, 0.25);
  assert.throws(() => parseRunConfig({ sampling: { k: 1 } }), /sampling\.k/);
  assert.throws(() => parseRunConfig({ train: { lr: -1 } }), /train\.lr/);
  assert.throws(() => parseRunConfig({ sampling: { tempratur: 1 } }), /sampling/);
  // a key nothing reads is not accepted (train.maxLength was validated but never applied)
  assert.throws(() => parseRunConfig({ train: { maxLength: 512 } }), /train/);
  writeFileSync(file, '{ nope');
  assert.throws(() => loadRunConfig(file), /not valid JSON/);
});

test('offline-DPO baselines imply gamma = 1', () => {
  assert.equal(loadRunConfig(undefined, { method: 'offline-dpo' }).replay.gamma, 1);
  assert.equal(loadRunConfig(undefined, { method: 'offline-dpo-new-ref' }).replay.gamma, 1);
});
