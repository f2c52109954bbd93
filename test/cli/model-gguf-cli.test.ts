import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openGgufStream } from '../../src/model/gguf/byte-stream.ts';
import { readGgufHeader } from '../../src/model/gguf/reader.ts';

const DICE = join(import.meta.dirname, '..', '..', 'bin', 'dice.mjs');
const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'gguf');
const dice = (...args: string[]) => spawnSync(process.execPath, [DICE, ...args], { encoding: 'utf8' });

test('dice model import / info / export / generate as a user runs them (child processes)', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'gguf-cli-'));
  try {
    const dir = join(tmp, 'model');
    const imp = dice('model', 'import', join(FIXTURES, 'qwen2.gguf'), '--out', dir);
    assert.equal(imp.status, 0, imp.stderr);
    assert.match(imp.stdout, /wrote .*model: qwen2, 1 layers, hidden 256, vocab 322/);
    assert.match(imp.stdout, /peak RSS \d+ MiB/);
    const info = dice('model', 'info', '--model', dir, '--json');
    assert.equal(info.status, 0, info.stderr);
    assert.equal(JSON.parse(info.stdout).chatTemplate, true);
    const out = join(tmp, 'model.q8_0.gguf');
    const exp = dice('model', 'export', dir, '--gguf', out, '--type', 'q8_0');
    assert.equal(exp.status, 0, exp.stderr);
    assert.match(exp.stdout, /q8_0, .* MiB of weights, checkpoint v0/);
    const header = await readGgufHeader(openGgufStream(out));
    assert.equal(header.metadata.get('general.architecture'), 'qwen2');
    assert.equal(header.metadata.get('dice.checkpoint.version'), 'v0');
    const gen = dice('generate', '--model', dir, '--prompt', 'Hi', '--temperature', '0', '--max-new-tokens', '4', '--json');
    assert.equal(gen.status, 0, gen.stderr);
    assert.equal(JSON.parse(gen.stdout.trim().split('\n')[0]).samples[0].tokenIds.length > 0, true);
    const bad = dice('model', 'import', join(FIXTURES, 'unsupported-arch.gguf'), '--out', join(tmp, 'bad'));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /"general\.architecture" is "mamba"/);
    const badType = dice('model', 'export', dir, '--gguf', join(tmp, 'x.gguf'), '--type', 'q2_k');
    assert.notEqual(badType.status, 0);
    assert.match(badType.stderr, /--type <type>' argument 'q2_k' is invalid\. must be one of f32, f16, q8_0, q4_0/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
