import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../../src/model/load.ts';
import { verifyCheckpoint } from '../../src/model/checkpoint.ts';
import { createLogger } from '../../src/util/log.ts';
import { ARENA_PHRASES, arenaModelConfig } from '../../src/testbed/bootstrap-model.ts';
import { bootstrap, settingsHash, type BootstrapSettings } from '../../src/testbed/bootstrap.ts';
import { TINY_MAIN_JOB } from '../../src/testbed/main-job.ts';

const quiet = createLogger({}, () => undefined);
const settings: BootstrapSettings = TINY_MAIN_JOB.bootstrap;

test('arena tokenizer: phrases are one token, answer words one character per token, any UTF-8 round-trips', () => {
  const { tokenizer, config } = arenaModelConfig(settings.model);
  assert.ok(config.vocabSize >= tokenizer.vocabSize && config.vocabSize % 8 === 0);
  for (const phrase of ARENA_PHRASES) assert.equal(tokenizer.encode(phrase, { addSpecialTokens: false }).length, 1, phrase);
  const ids = tokenizer.encode('Sure! The answer is TAMOK. Hope this helps.', { addSpecialTokens: false });
  // Sure! · Ġ · The answer is · Ġ · T A M O K · . · Ġ · Hope this helps.
  assert.equal(ids.length, 12);
  assert.equal(tokenizer.encode('uppercase the word tamok')[0], config.bosTokenId);
  for (const s of ['reverse the word zutobot', 'count the letter a in banana', 'héllo wörld ✓', 'The answer is 107.']) {
    assert.equal(tokenizer.decode(tokenizer.encode(s), { skipSpecialTokens: true }), s);
  }
});

test('bootstrap: loadable π_ref(0) and π_θ(0) with their data, seeded, cached by settings hash', async () => {
  const root = mkdtempSync(join(tmpdir(), 'dice-boot-'));
  const first = await bootstrap(settings, { cacheRoot: join(root, 'a'), log: quiet });
  assert.equal(first.cached, false);
  assert.equal(first.settingsHash, settingsHash(settings));
  for (const dir of [first.refDir, first.policyDir]) {
    const m = loadModel(dir);
    assert.equal(m.config.hiddenSize, settings.model.hiddenSize);
    assert.equal(m.tokenizer.encode('The answer is', { addSpecialTokens: false }).length, 1);
  }
  assert.equal(verifyCheckpoint(first.policyDir).parentVersion, 'ref0');
  assert.equal(first.tasks.sft.length, settings.arena.sftTasks);
  assert.equal(first.tasks.eval.length, settings.arena.evalTasks);
  const evalPrompts = new Set(first.tasks.eval.map((t) => t.prompt));
  assert.ok([...first.tasks.sft, ...first.tasks.preference].every((t) => !evalPrompts.has(t.prompt)), 'no eval prompt is trained on');
  const offline = readFileSync(first.offlineFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.ok(offline.length > 0 && offline.length <= settings.arena.preferenceTasks);
  for (const p of offline) assert.ok(p.prompt && p.chosen && p.rejected && p.chosen !== p.rejected);
  assert.equal(readFileSync(first.promptsFile, 'utf8').trim().split('\n').length, settings.arena.preferenceTasks);
  // SFT from scratch learns: the loss falls from ~ln(vocab).
  assert.ok(first.history.sft.at(-1)!.loss < first.history.sft[0].loss - 0.3, JSON.stringify(first.history.sft));
  assert.equal(first.history.dpo.length, settings.dpo.steps);

  // Cached: same folder, no training, same weights.
  const again = await bootstrap(settings, { cacheRoot: join(root, 'a'), log: quiet });
  assert.equal(again.cached, true);
  assert.equal(again.policyDir, first.policyDir);
  assert.deepEqual(again.history, first.history);

  // Seeded: an independent build from the same settings gives the same weights, byte for byte.
  const other = await bootstrap(settings, { cacheRoot: join(root, 'b'), log: quiet });
  assert.equal(other.cached, false);
  assert.equal(verifyCheckpoint(other.refDir).sha256, verifyCheckpoint(first.refDir).sha256);
  assert.equal(verifyCheckpoint(other.policyDir).sha256, verifyCheckpoint(first.policyDir).sha256);

  // Other settings, other cache entry.
  const changed = { ...settings, dpo: { ...settings.dpo, lr: settings.dpo.lr * 2 } };
  assert.notEqual(settingsHash(changed), settingsHash(settings));
  // ... which reuses π_ref(0): the SFT stage is keyed without the DPO settings.
  const retuned = await bootstrap(changed, { cacheRoot: join(root, 'a'), log: quiet });
  assert.equal(retuned.cached, false);
  assert.notEqual(retuned.dir, first.dir);
  assert.equal(verifyCheckpoint(retuned.refDir).sha256, verifyCheckpoint(first.refDir).sha256);
  assert.deepEqual(retuned.history.sft, first.history.sft);
  assert.notEqual(verifyCheckpoint(retuned.policyDir).sha256, verifyCheckpoint(first.policyDir).sha256);

  // A cache whose weights were changed is refused, not used.
  const weights = join(first.policyDir, 'model.safetensors');
  const bytes = readFileSync(weights);
  bytes[bytes.length - 1] ^= 0xff;
  writeFileSync(weights, bytes);
  await assert.rejects(bootstrap(settings, { cacheRoot: join(root, 'a'), log: quiet }), /sha256|hash|manifest/i);
});

test('bootstrap settings: bad values name the field', async () => {
  const bad = { ...settings, sft: { ...settings.sft, steps: 0 } };
  await assert.rejects(bootstrap(bad, { cacheRoot: tmpdir(), log: quiet }), /sft\.steps must be a positive integer/);
  const noFamilies = { ...settings, arena: { ...settings.arena, families: [] } };
  await assert.rejects(bootstrap(noFamilies, { cacheRoot: tmpdir(), log: quiet }), /arena\.families is empty/);
});

test('bootstrap chosenNll: NLL on the chosen responses after DPO gives π_θ(0) (reusing π_ref(0)), closer to the chosen answers', async () => {
  const root = mkdtempSync(join(tmpdir(), 'dice-boot-nll-'));
  const dpoOnly = await bootstrap(settings, { cacheRoot: root, log: quiet });
  const withNll: BootstrapSettings = { ...settings, chosenNll: { steps: 4, batch: 8, lr: 3e-3, warmupSteps: 1 } };
  assert.notEqual(settingsHash(withNll), settingsHash(settings));
  const nll = await bootstrap(withNll, { cacheRoot: root, log: quiet });
  assert.equal(verifyCheckpoint(nll.refDir).sha256, verifyCheckpoint(dpoOnly.refDir).sha256);
  const manifest = verifyCheckpoint(nll.policyDir);
  assert.equal(manifest.version, 'v0');
  assert.equal(manifest.parentVersion, 'ref0');
  assert.equal(manifest.referenceVersion, 'ref0');
  assert.equal((manifest.metrics as { stage?: string }).stage, 'chosen-nll');
  assert.notEqual(manifest.sha256, verifyCheckpoint(dpoOnly.policyDir).sha256);
  // The extra stage raises the likelihood of D_offline's chosen responses over DPO alone.
  const { Trainer } = await import('../../src/engine/trainer.ts');
  const { encodeSft } = await import('../../src/testbed/bootstrap.ts');
  const tokenizer = arenaModelConfig(settings.model).tokenizer;
  const offline = readFileSync(nll.offlineFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { prompt: string; chosen: string });
  const rows = offline.map((p) => {
    const e = encodeSft(tokenizer, p.prompt, p.chosen);
    return { prompt: e.promptTokenIds, response: e.completionTokenIds };
  });
  const meanLogp = async (dir: string) => {
    const t = await Trainer.open({ modelDir: dir }, { loss: 'dpo', beta: 0.1, lr: 1e-6, warmupSteps: 0, threads: 1 });
    try {
      const l = await t.policyLogps(rows);
      return l.reduce((a, b) => a + b, 0) / l.length;
    } finally {
      await t.close();
    }
  };
  assert.ok((await meanLogp(nll.policyDir)) > (await meanLogp(dpoOnly.policyDir)));
});
