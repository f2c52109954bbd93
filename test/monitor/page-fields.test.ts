import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { PAGE_READS, PAGE_READS_CHECKPOINT_RECORD, type PageEvent } from '../../src/monitor/page-fields.ts';
import { ROUND_EMITS } from '../../src/service/dice-round.ts';
import { SERVE_EMITS } from '../../src/service/serve.ts';
import { STAGES, type EmittedEvent } from '../../src/stages/index.ts';

// Compile time: every event type the page reads is emitted by some stage, by diceRound or by dice serve. A page
// event nobody emits makes `Unproduced` non-never, and this assignment fails to compile; a renamed
// field fails in src/monitor/page-fields.ts (typed against src/stages/metric-events.ts).
type Unproduced = Exclude<PageEvent, EmittedEvent | (typeof ROUND_EMITS)[number] | (typeof SERVE_EMITS)[number]>;
const everyPageEventIsProduced: [Unproduced] extends [never] ? true : never = true;

const appJs = readFileSync(fileURLToPath(new URL('../../src/monitor/page/app.js', import.meta.url)), 'utf8');

test('the page reads exactly the typed fields of page-fields.ts, and some stage emits each event it reads', () => {
  assert.equal(everyPageEventIsProduced, true);
  const reads = [...appJs.matchAll(/(?:field|flag|text)\(e, '([^']+)', '([^']+)'\)/g)].map((m) => `${m[1]}.${m[2]}`);
  const listed = Object.entries(PAGE_READS).flatMap(([kind, fields]) => fields.map((f) => `${kind}.${f}`));
  assert.ok(reads.length > 0, 'app.js reads fields through field(e, kind, name)');
  assert.ok(reads.includes('health/version.promoted') && reads.includes('health/gate-failed.reasons'), 'booleans and texts are read through flag/text');
  assert.deepEqual([...new Set(reads)].sort(), [...listed].sort(), 'app.js field(...) reads = PAGE_READS');
  // the only other named reads are of checkpoint records; nothing guesses at alternative names
  const plain = [...appJs.matchAll(/num\(e, '([^']+)'\)/g)].map((m) => m[1]);
  assert.deepEqual([...new Set(plain)].sort(), [...PAGE_READS_CHECKPOINT_RECORD].sort());
  assert.doesNotMatch(appJs, /lenDiffBefore|meanLengthDiffBefore|alphaStar|dpoLoss/);
  // at run time too: each page event is in some stage's `emits` (or diceRound's, or dice serve's)
  const emitted = new Set<string>([...STAGES.flatMap((s) => [...s.emits]), ...ROUND_EMITS, ...SERVE_EMITS]);
  for (const kind of Object.keys(PAGE_READS)) assert.ok(emitted.has(kind), `${kind} is emitted`);
});
