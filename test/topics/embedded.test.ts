import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { openEmbeddedBus } from '../../topics/embedded.ts';
import { busConformanceSuite } from './bus-conformance.ts';

const dir = mkdtempSync(join(tmpdir(), 'dice-embedded-'));
after(() => rmSync(dir, { recursive: true, force: true }));

busConformanceSuite('embedded', () => openEmbeddedBus(join(dir, 'bus.db')), { waitMs: 10_000 });
