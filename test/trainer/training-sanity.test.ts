import test from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readHfConfig } from '../../src/model/hf-config.ts';
import { readSafetensorsDir } from '../../src/model/safetensors.ts';
import { Trainer, preferenceRows, type PreferencePair, type SftExample } from '../../src/engine/trainer.ts';
import { Rng } from '../../src/util/random.ts';

// Training end to end in the worker-hosted trainer on a tiny Llama (test/fixtures/train/tiny-llama).
const dir = join(import.meta.dirname, '..', 'fixtures', 'train', 'tiny-llama', 'model');
const model = () => ({ config: readHfConfig(join(dir, 'config.json')), weights: readSafetensorsDir(dir).weights });
const rng = new Rng(5);
const tok = () => 3 + rng.int(60);

test('DPO on a small synthetic preference set reaches implicit-reward accuracy ≥ 0.95 on its pairs', async () => {
  const trainer = await Trainer.open({ model: model() }, { loss: 'dpo', beta: 0.1, lr: 1e-2, warmupSteps: 5, threads: 1 });
  try {
    const raw = Array.from({ length: 16 }, () => ({ prompt: [1, tok(), tok()], chosen: [tok(), tok(), 2], rejected: [tok(), tok(), tok(), 2] }));
    const ref = await trainer.policyLogps(preferenceRows(raw.map((r) => ({ promptTokenIds: r.prompt, chosenTokenIds: r.chosen, rejectedTokenIds: r.rejected, refChosenLogp: 0, refRejectedLogp: 0 }))));
    const pairs: PreferencePair[] = raw.map((r, i) => ({
      promptTokenIds: r.prompt,
      chosenTokenIds: r.chosen,
      rejectedTokenIds: r.rejected,
      refChosenLogp: ref[i],
      refRejectedLogp: ref[16 + i],
    }));
    const first = await trainer.step({ kind: 'preference', pairs });
    assert.ok(Math.abs(first.loss - Math.LN2) < 1e-5, `policy = reference at step 1, so the DPO loss is log 2 (got ${first.loss})`);
    assert.equal(first.lr, 0, 'warm-up starts at lr 0');
    let last = first;
    for (let s = 0; s < 30; s++) last = await trainer.step({ kind: 'preference', pairs });
    assert.equal(last.step, 31);
    assert.ok(last.loss < first.loss * 0.5, `loss fell from ${first.loss} to ${last.loss}`);
    const now = await trainer.policyLogps(preferenceRows(pairs));
    const correct = pairs.filter((p, i) => 0.1 * (now[i] - p.refChosenLogp) > 0.1 * (now[16 + i] - p.refRejectedLogp)).length;
    assert.ok(correct / pairs.length >= 0.95, `implicit-reward accuracy ${correct / pairs.length}`);
  } finally {
    await trainer.close();
  }
});

test('SFT lowers the token NLL of its examples (accumulating 2 micro-batches)', async () => {
  const trainer = await Trainer.open({ model: model() }, { loss: 'sft', beta: 0, lr: 1e-2, warmupSteps: 0, microBatch: 4 });
  try {
    const examples: SftExample[] = Array.from({ length: 8 }, () => ({ promptTokenIds: [1, tok()], completionTokenIds: [tok(), tok(), tok(), 2] }));
    const first = await trainer.step({ kind: 'sft', examples });
    assert.equal(first.microBatches, 2);
    assert.equal(first.tokens, 32);
    let last = first;
    for (let s = 0; s < 15; s++) last = await trainer.step({ kind: 'sft', examples });
    assert.ok(last.loss < first.loss * 0.7, `NLL fell from ${first.loss} to ${last.loss}`);
  } finally {
    await trainer.close();
  }
});

test('a preference batch for the sft loss is refused with a clear error', async () => {
  const trainer = await Trainer.open({ model: model() }, { loss: 'sft', beta: 0, lr: 1e-3, warmupSteps: 0 });
  try {
    await assert.rejects(trainer.step({ kind: 'preference', pairs: [] }), /a preference batch cannot train the sft loss/);
  } finally {
    await trainer.close();
  }
});

test('an execution provider that is not available is refused with a clear error', async () => {
  const trainer = await Trainer.open({ model: model() }, { loss: 'sft', beta: 0, lr: 1e-3, warmupSteps: 0, provider: 'cuda' });
  try {
    await assert.rejects(trainer.step({ kind: 'sft', examples: [{ promptTokenIds: [1], completionTokenIds: [5, 2] }] }), /execution provider 'cuda'/);
  } finally {
    await trainer.close();
  }
});
