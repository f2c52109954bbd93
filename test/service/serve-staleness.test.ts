import test from 'node:test';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { checkBoundedStaleness } from './stale-serve.ts';

test('dice serve with serve.maxStaleness=1 (embedded bus): samplers work while a round trains, rewards from the sampling version, over-bound groups dropped', async () => {
  await checkBoundedStaleness(`embedded:${join(mkdtempSync(join(tmpdir(), 'dice-stale-')), 'bus.db')}`, undefined);
});
