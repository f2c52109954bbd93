import test from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openEmbeddedBus } from '../../topics/embedded.ts';
import { offlineTopic } from '../../topics/offline.ts';
import { promptsTopic } from '../../topics/prompts.ts';
import { createPipelineTopics } from '../../topics/registry.ts';
import { ingestFile, offlineDefaults, promptDefaults } from '../../src/service/ingest.ts';
import { readWholeTopic } from '../../src/service/stage-runner.ts';
import { answerText } from '../../operators/replay.ts';

// One row shaped like HuggingFaceH4/ultrafeedback_binarized (train_prefs).
const uf = {
  prompt: 'What is 2+2?',
  prompt_id: 'abc123',
  chosen: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4.' }],
  rejected: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '5, I think.' }],
  messages: [{ role: 'user', content: 'What is 2+2?' }, { role: 'assistant', content: '4.' }],
  score_chosen: 8,
  score_rejected: 3,
};

test('ultrafeedback_binarized rows ingest as prompts and offline pairs; a rerun adds nothing; bad rows go to dead-letter', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ingest-'));
  const file = join(dir, 'uf.jsonl');
  writeFileSync(file, [JSON.stringify(uf), '{"prompt": 42}', JSON.stringify({ messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'yo' }] })].join('\n'));
  const bus = await openEmbeddedBus(join(dir, 'bus.db'));
  try {
    await createPipelineTopics(bus, 'n');
    const prompts = await ingestFile(bus, 'n.prompts', 'n.dead-letter', promptsTopic, file, promptDefaults);
    assert.equal(prompts.values.length, 2);
    assert.equal(prompts.deadLettered, 1);
    assert.deepEqual(prompts.values.map((p) => [p.promptId, p.text, p.messages]), [
      ['abc123', 'What is 2+2?', null],
      ['uf.jsonl:2', null, [{ role: 'user', content: 'hi' }]], // the answer turn is not part of the prompt
    ]);
    const again = await ingestFile(bus, 'n.prompts', 'n.dead-letter', promptsTopic, file, promptDefaults);
    assert.equal(again.produced, 0);
    assert.equal((await readWholeTopic(bus, 'n.prompts', promptsTopic)).length, 2);

    const offline = await ingestFile(bus, 'n.offline', 'n.dead-letter', offlineTopic, file, offlineDefaults);
    const pair = offline.values[0];
    assert.equal(pair.pairId, 'abc123');
    assert.equal(answerText(pair, 'chosen'), '4.');
    assert.equal(answerText(pair, 'rejected'), '5, I think.');
  } finally {
    await bus.close();
  }
});
