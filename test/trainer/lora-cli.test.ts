import test from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sha256File, verifyCheckpoint } from '../../src/model/checkpoint.ts';
import { loadModel } from '../../src/model/load.ts';
import { loadPolicy } from '../../src/model/policy.ts';
import { Scorer } from '../../src/engine/scorer.ts';

const root = join(import.meta.dirname, '..', '..');
const dice = (...args: string[]) => execFileSync(process.execPath, [join(root, 'bin', 'dice.mjs'), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const diceFails = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin', 'dice.mjs'), ...args], { encoding: 'utf8' });

test('dice train --lora: a PEFT adapter checkpoint on the frozen base (reference = adapter off), chained per round; merge and engines agree; a changed base is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dice-lora-cli-'));
  try {
    const base = join(dir, 'base');
    dice('model', 'init', '--arch', 'tiny', '--out', base, '--seed', '3');
    const pairs = join(dir, 'pairs.jsonl');
    const records = [
      { id: 'a', prompt: 'Name a colour.', chosen: 'Blue.', rejected: 'I like many colours, for example' },
      { id: 'b', prompt: 'Add 2 and 2.', chosen: '4', rejected: 'Five' },
    ];
    writeFileSync(pairs, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const train = (model: string, out: string) =>
      dice('train', '--model', model, '--pairs', pairs, '--lora', 'r=4,alpha=8,targets=q,k,v,o,gate,up,down', '--steps', '3', '--batch', '2', '--lr', '1e-2', '--warmup', '0', '--out', out, '--json')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
    const v1 = join(dir, 'v1');
    const lines = train(base, v1);
    assert.ok(Math.abs(lines[0].loss - Math.LN2) < 1e-5, `B = 0 at the start: policy = base = reference, loss log 2, got ${lines[0].loss}`);
    assert.ok(lines[2].loss < lines[0].loss, 'loss falls');
    assert.ok(existsSync(join(v1, 'adapter_model.safetensors')) && existsSync(join(v1, 'adapter_config.json')));
    assert.ok(!existsSync(join(v1, 'model.safetensors')), 'no copy of the base weights');
    const manifest = verifyCheckpoint(v1);
    assert.equal(manifest.weightsFile, 'adapter_model.safetensors');
    assert.equal(manifest.sha256, sha256File(join(v1, 'adapter_model.safetensors')));
    assert.equal(manifest.adapter!.base.location, resolve(base));
    assert.equal(manifest.adapter!.base.sha256, sha256File(join(base, 'model.safetensors')));
    assert.deepEqual([manifest.adapter!.r, manifest.adapter!.alpha], [4, 8]);
    const config = JSON.parse(readFileSync(join(v1, 'adapter_config.json'), 'utf8'));
    assert.equal(config.base_model_name_or_path, resolve(base));

    // round 2: a fresh adapter on v1 (base + adapter 1), whose manifest names v1
    const v2 = join(dir, 'v2');
    train(v1, v2);
    const m2 = verifyCheckpoint(v2);
    assert.equal(m2.parentVersion, manifest.version);
    assert.equal(m2.adapter!.base.version, manifest.version);
    assert.equal(m2.adapter!.base.location, resolve(v1));
    assert.equal(m2.adapter!.base.sha256, manifest.sha256);
    const policy = loadPolicy(v2);
    assert.equal(policy.adapters.length, 2);

    // dice model merge: a plain HF model; the scorer on the adapter dir and on the merged dir agree
    const merged = join(dir, 'merged');
    const said = dice('model', 'merge', v2, '--out', merged);
    assert.match(said, /2 adapter\(s\) folded/);
    const full = loadModel(merged);
    const baseModel = loadModel(base);
    const q = 'model.layers.0.self_attn.q_proj.weight';
    assert.notDeepEqual(full.weights.get(q)!.data.slice(0, 32), baseModel.weights.get(q)!.data.slice(0, 32), 'adapters folded in');
    assert.deepEqual(full.weights.get('model.norm.weight')!.data, baseModel.weights.get('model.norm.weight')!.data, 'untargeted tensors are the base');
    const rows = [{ promptTokenIds: [1, 5, 6, 7], responseTokenIds: [8, 9, 2] }];
    const scoreWith = async (modelDir: string) => {
      const s = await Scorer.open({ modelDir });
      try {
        return (await s.score(rows))[0].logProb;
      } finally {
        await s.close();
      }
    };
    const [onAdapter, onMerged, onBase] = [await scoreWith(v2), await scoreWith(merged), await scoreWith(base)];
    assert.ok(Math.abs(onAdapter - onMerged) < 1e-5, `adapter dir ${onAdapter} vs merged ${onMerged}`);
    assert.ok(Math.abs(onAdapter - onBase) > 1e-4, 'the adapters change the policy');

    // the base changes under the adapter: refused, naming it
    const weights = join(base, 'model.safetensors');
    const bytes = readFileSync(weights);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(weights, bytes);
    assert.throws(() => verifyCheckpoint(v1), /the adapter's base model changed/);
    const r = diceFails('model', 'merge', v1, '--out', join(dir, 'x'));
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /base model changed/);
    const bad = diceFails('train', '--model', base, '--pairs', pairs, '--lora', 'r=4,alpha=8,targets=q,lm_head', '--out', join(dir, 'y'));
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /--lora .*targets/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
