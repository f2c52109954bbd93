import test from 'node:test';
import assert from 'node:assert/strict';
import { from, lastValueFrom, map, Subject, tap, toArray } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { promptChunks, sample } from '../../operators/sample.ts';
import { score } from '../../operators/score.ts';
import { alphaPairs, buildWindow } from '../../operators/alpha.ts';
import { replay } from '../../operators/replay.ts';
import { switchEngines } from '../../operators/checkpoint.ts';
import type { SamplerPort, ScorerPort } from '../../operators/ports.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { SamplesGroup } from '../../topics/samples.ts';
import type { ScoredGroup } from '../../topics/scored.ts';
import type { OfflinePair } from '../../topics/offline.ts';
import type { SampleRequest } from '../../src/engine/sampler.ts';
import { packGroups, solveAlpha } from '../../src/dice/alpha.ts';
import { Rng } from '../../src/util/random.ts';

const prompt = (id: string): PromptRecord => ({ promptId: id, text: `say ${id}`, messages: null, source: 'test', arrivalTime: 0 });

/** A fake sampler: response j of a prompt has j+1 tokens; log-prob −(j+1); rejects prompts named 'bad'. */
function fakeSampler(calls: SampleRequest[][]): SamplerPort {
  return {
    async generate(requests) {
      calls.push(requests);
      return requests.map((r) =>
        r.promptId === 'bad'
          ? { promptId: r.promptId, promptTokenIds: [], samples: [], error: 'prompt is 9000 tokens, over the limit of 2048' }
          : {
              promptId: r.promptId,
              promptTokenIds: [1, 2, 3],
              samples: Array.from({ length: r.k }, (_, k) => ({
                k,
                seed: r.seed + k,
                tokenIds: Array.from({ length: k + 1 }, (_, i) => 10 + i),
                text: 'x'.repeat(k + 1),
                finishReason: 'eos' as const,
                logProb: -(k + 1),
              })),
            },
      );
    },
  };
}

/** A fake reference: log-prob = −2 × response tokens (so reward favours longer responses: a length bias). */
const fakeReference = (calls: number[] = []): ScorerPort => ({
  async score(items) {
    calls.push(items.length);
    return items.map((it) => {
      const resp = it.responseTokenIds ?? Array.from({ length: (it.response ?? '').length }, () => 5);
      return { logProb: -2 * resp.length, tokenLogProbs: [], promptTokenIds: it.promptTokenIds ?? [7, 7], responseTokenIds: resp };
    });
  },
});

test('sample: K responses per prompt with version, seeds and recorded log-probs; bad prompts rejected, stream goes on', async () => {
  const calls: SampleRequest[][] = [];
  const out = await lastValueFrom(
    from([prompt('a'), prompt('bad'), prompt('b')]).pipe(
      sample({ sampler: fakeSampler(calls), policyVersion: 3, round: 2, runSeed: 9, k: 4, params: {}, chat: false, chunkOf: promptChunks(['a', 'bad', 'b'].map(prompt), 8) }),
      toArray(),
    ),
  );
  assert.equal(out.length, 3);
  const [a, bad, b] = out;
  assert.ok('kind' in bad && bad.kind === 'rejected' && /over the limit/.test(bad.error));
  const ga = a as SamplesGroup;
  assert.equal(ga.policyVersion, 3);
  assert.equal(ga.round, 2);
  assert.equal(ga.responses.length, 4);
  assert.deepEqual(ga.responses.map((r) => r.policyLogp), [-1, -2, -3, -4]);
  assert.deepEqual(ga.responses.map((r) => r.charLength), [1, 2, 3, 4]);
  assert.equal((b as SamplesGroup).promptId, 'b');
  // seeds depend on (runSeed, promptId, version): different prompts, different seeds
  assert.notEqual(calls[0][0].seed, calls[0][2].seed);
});

async function sampledGroups(version: number, ids = ['a', 'b', 'c']): Promise<SamplesGroup[]> {
  const out = await lastValueFrom(
    from(ids.map(prompt)).pipe(sample({ sampler: fakeSampler([]), policyVersion: version, round: 1, runSeed: 1, k: 4, params: {}, chat: false }), toArray()),
  );
  return out as SamplesGroup[];
}

test('score: implicit rewards β(log π − log π_ref) from recorded log-probs; stale versions dropped and counted', async () => {
  const fresh = await sampledGroups(1);
  const stale = await sampledGroups(0, ['old']);
  let staleCount = 0;
  const scored = await lastValueFrom(
    from([fresh[0], stale[0], fresh[1]]).pipe(
      score({ reference: fakeReference(), referenceVersion: 0, beta: 0.1, expectedPolicyVersion: 1, onStale: () => staleCount++ }),
      toArray(),
    ),
  );
  assert.equal(staleCount, 1);
  assert.deepEqual(scored.map((g) => g.promptId), ['a', 'b']);
  const r = scored[0].responses[2]; // 3 tokens: policy −3, ref −6
  assert.equal(r.refLogp, -6);
  assert.ok(Math.abs(r.reward - 0.1 * (-3 + 6)) < 1e-12);
  assert.equal(scored[0].referenceVersion, 0);
});

function randomScoredGroups(n: number, seed: number): ScoredGroup[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, g) => ({
    promptId: `p${g}`,
    prompt: 'q',
    promptTokenIds: Int32Array.of(1),
    round: 1,
    policyVersion: 1,
    runSeed: 0,
    referenceVersion: 0,
    beta: 0.1,
    responses: Array.from({ length: 8 }, (_, k) => {
      const len = 1 + rng.int(60);
      const text = 'y'.repeat(len);
      return {
        k,
        seed: k,
        tokenIds: Int32Array.from({ length: len }, () => 3),
        text,
        charLength: len,
        tokenLength: len,
        finishReason: rng.next() < 0.1 ? ('length' as const) : ('eos' as const),
        policyLogp: -len,
        refLogp: -len * 1.5,
        reward: 0.02 * len + rng.normal() * 0.3, // length-biased rewards
      };
    }),
  }));
}

test('alpha: a window gets the exact α*, its pairs realise the objective, and shaping removes the length bias', () => {
  const groups = randomScoredGroups(200, 5);
  const w = buildWindow(groups, 0, { round: 1, mode: 'optimal', lengthUnit: 'chars', filters: { minKeptFraction: 0.5 } });
  assert.ok(w.solution);
  assert.ok(w.lengths!.before.stats.mean > 5, `vanilla rewards prefer longer responses: ${w.lengths!.before.stats.mean}`);
  assert.ok(Math.abs(w.lengths!.after.stats.mean) <= Math.abs(w.lengths!.before.stats.mean) * 0.05);
  const realised = w.pairs.reduce((s, p) => s + p.chosen.charLength - p.rejected.charLength, 0) / w.pairs.length;
  assert.ok(Math.abs(Math.abs(realised) - w.solution.objective) < 1e-9, `${realised} vs ${w.solution.objective}`);
  assert.equal(w.pairs.length, w.filter.groupsKept);
  assert.ok(w.pairs.every((p) => p.alpha === w.alpha && p.source === 'generated' && p.chosen.logp === -p.chosen.charLength));
  // truncated responses never appear in pairs
  const truncated = new Set(groups.flatMap((g) => g.responses.filter((r) => r.finishReason === 'length').map((r) => `${g.promptId}/${r.text.length}`)));
  assert.ok(truncated.size > 0);
  // fixed α and multiplier
  const w2 = buildWindow(groups, 1, { round: 1, mode: 'optimal', multiplier: 2, lengthUnit: 'chars', filters: {} });
  assert.ok(Math.abs(w2.alpha - 2 * w.alpha) < 1e-12);
  const w0 = buildWindow(groups, 2, { round: 1, mode: 'fixed', value: 0, lengthUnit: 'chars', filters: {} });
  assert.equal(w0.alpha, 0);
  assert.ok(Math.abs(w0.lengths!.after.stats.mean - w.lengths!.before.stats.mean) < 1e-9);
});

test('alpha: count windows (marbles) — two full windows and the remainder on completion', () => {
  const groups = randomScoredGroups(5, 1);
  const scheduler = new TestScheduler((a, b) => assert.deepEqual(a, b));
  scheduler.run(({ cold, expectObservable }) => {
    const src = cold('a-b-c-d-e|', { a: groups[0], b: groups[1], c: groups[2], d: groups[3], e: groups[4] });
    const ids = src.pipe(alphaPairs({ round: 1, mode: 'optimal', lengthUnit: 'chars', filters: {}, windowSize: 2 }));
    const summary = ids.pipe(map((w) => `${w.windowId}:${w.filter.groupsIn}`));
    expectObservable(summary).toBe('--x---y--(z|)', { x: '0:2', y: '1:2', z: '2:1' });
  });
});

test('replay: exactly ⌊γN⌋ offline pairs, disjoint prompts, only offline pairs are rescored, S batches of B', async () => {
  const groups = randomScoredGroups(30, 2);
  const w = buildWindow(groups, 0, { round: 1, mode: 'optimal', lengthUnit: 'chars', filters: {} });
  const offline: OfflinePair[] = Array.from({ length: 100 }, (_, i) => ({
    pairId: `off${i}`,
    prompt: i < 10 ? 'q' : `offline prompt ${i}`, // the first 10 share the round's prompt text and must be excluded
    chosen: 'good answer',
    rejected: null,
    chosenMessages: null,
    rejectedMessages: [{ role: 'user', content: 'x' }, { role: 'assistant', content: 'bad' }],
    source: 'test',
  }));
  const scoredCounts: number[] = [];
  let mixInfo: { size: number; offlineCount: number; offlineExcluded: number } | undefined;
  const batches = await lastValueFrom(
    from(w.pairs).pipe(
      replay({
        round: 1, runId: 'r', runSeed: 4, gamma: 0.5, offline, reference: fakeReference(scoredCounts), referenceIsSamplingPolicy: true,
        chat: false, steps: 3, batchSize: 8, onMix: (m) => (mixInfo = m),
      }),
      toArray(),
    ),
  );
  const n = w.pairs.length;
  assert.equal(mixInfo!.size, 2 * n);
  assert.equal(mixInfo!.offlineCount, Math.floor(0.5 * 2 * n));
  assert.equal(mixInfo!.offlineExcluded, 10);
  assert.deepEqual(scoredCounts, [2 * mixInfo!.offlineCount]); // generated pairs reuse the sampler's log-probs
  assert.equal(batches.length, 3);
  assert.ok(batches.every((b) => b.rows.length === 8 && b.round === 1));
  const rows = batches.flatMap((b) => b.rows);
  const off = rows.find((r) => r.source === 'offline')!;
  assert.equal(off.rejectedRefLogp, -2 * 'bad'.length);
  const gen = rows.find((r) => r.source === 'generated')!;
  const pair = w.pairs.find((p) => p.pairId === gen.pairId)!;
  assert.equal(gen.chosenRefLogp, pair.chosen.logp);
  assert.ok(rows.filter((r) => r.source === 'offline').every((r) => Number(r.pairId.slice(3)) >= 10));
});

test('the exact α* matches a brute-force grid on operator windows', () => {
  const groups = randomScoredGroups(50, 11);
  const w = buildWindow(groups, 0, { round: 1, mode: 'optimal', lengthUnit: 'chars', filters: { dropTruncated: false, minKeptFraction: 0 } });
  const packed = packGroups(groups.map((g) => ({ rewards: g.responses.map((r) => r.reward), lengths: g.responses.map((r) => r.charLength) })));
  const exact = solveAlpha(packed);
  assert.equal(w.alpha, exact.alpha);
});

test('switchEngines: one engine per new version, the old one closed once the new one is open', async () => {
  const log: string[] = [];
  const versions = new Subject<number>();
  const seen: number[] = [];
  const done = lastValueFrom(
    versions.pipe(
      switchEngines(async (v) => {
        log.push(`open ${v}`);
        await new Promise((r) => setTimeout(r, 5));
        return { close: async () => void log.push(`close ${v}`) };
      }),
      map((a) => a.version),
      tap((v) => seen.push(v)),
      toArray(),
    ),
  );
  for (const v of [0, 0, 1, 2]) versions.next(v);
  versions.complete();
  assert.deepEqual(await done, [0, 1, 2]);
  assert.deepEqual(log, ['open 0', 'open 1', 'close 0', 'open 2', 'close 1', 'close 2']);
});
