import test from 'node:test';
import assert from 'node:assert/strict';
import { from, lastValueFrom, toArray } from 'rxjs';
import { promptChunks, sample } from '../../operators/sample.ts';
import type { SamplerPort } from '../../operators/ports.ts';
import type { PromptRecord } from '../../topics/prompts.ts';
import type { SamplesGroup } from '../../topics/samples.ts';
import type { SampleRequest } from '../../src/engine/sampler.ts';

const prompt = (id: string): PromptRecord => ({ promptId: id, text: `say ${id}`, messages: null, source: 'test', arrivalTime: 0 });
const round = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map(prompt);

/** A fake engine whose answers depend on the batch, as float rounding does: log-prob = −(batch ids joined).length. */
function batchSensitiveSampler(calls: string[][]): SamplerPort {
  return {
    async generate(requests: SampleRequest[]) {
      const ids = requests.map((r) => r.promptId);
      calls.push(ids);
      return requests.map((r) => ({
        promptId: r.promptId,
        promptTokenIds: [1],
        samples: Array.from({ length: r.k }, (_, k) => ({ k, seed: r.seed + k, tokenIds: [9], text: ids.join(''), finishReason: 'eos' as const, logProb: -ids.length })),
      }));
    },
  };
}

async function sampled(arrivals: string[], calls: string[][] = []): Promise<Map<string, SamplesGroup>> {
  const chunkOf = promptChunks(round, 3);
  const out = await lastValueFrom(
    from(arrivals.map(prompt)).pipe(sample({ sampler: batchSensitiveSampler(calls), policyVersion: 0, round: 1, runSeed: 5, k: 2, params: {}, chat: false, chunkOf }), toArray()),
  );
  return new Map(out.map((g) => [(g as SamplesGroup).promptId, g as SamplesGroup]));
}

test('promptChunks: consecutive chunks of the round order; a bad size or a repeated id is an error', () => {
  const chunkOf = promptChunks(round, 3);
  assert.deepEqual(chunkOf('a')!.map((p) => p.promptId), ['a', 'b', 'c']);
  assert.deepEqual(chunkOf('e')!.map((p) => p.promptId), ['d', 'e', 'f']);
  assert.deepEqual(chunkOf('g')!.map((p) => p.promptId), ['g']);
  assert.equal(chunkOf('zz'), undefined);
  assert.equal(chunkOf('b'), chunkOf('c'), 'members share one chunk object');
  assert.throws(() => promptChunks(round, 0), /prompts per chunk must be an integer ≥ 1, got 0/);
  assert.throws(() => promptChunks([prompt('a'), prompt('a')], 2), /prompt id a appears twice/);
});

test('sample by chunk: engine batches are whole chunks whatever the arrival order, and a restart (some members gone) gives the same answers', async () => {
  const calls: string[][] = [];
  const inOrder = await sampled(round.map((p) => p.promptId), calls);
  assert.deepEqual(calls, [['a', 'b', 'c'], ['d', 'e', 'f'], ['g']], 'one engine call per chunk, in round order');
  assert.equal(inOrder.get('b')!.responses[0].text, 'abc');

  const shuffledCalls: string[][] = [];
  const shuffled = await sampled(['f', 'a', 'g', 'd', 'c', 'b', 'e'], shuffledCalls);
  assert.deepEqual(shuffledCalls, [['d', 'e', 'f'], ['a', 'b', 'c'], ['g']]);
  // after a restart only the uncommitted prompts arrive: their chunks are still sampled whole
  const resumedCalls: string[][] = [];
  const resumed = await sampled(['c', 'e'], resumedCalls);
  assert.deepEqual(resumedCalls, [['a', 'b', 'c'], ['d', 'e', 'f']]);
  assert.deepEqual([...resumed.keys()], ['c', 'e'], 'answers only for the prompts that arrived');
  for (const id of ['c', 'e']) {
    assert.deepEqual(resumed.get(id), inOrder.get(id));
    assert.deepEqual(shuffled.get(id), inOrder.get(id));
  }
  // a prompt outside the round list is sampled on its own
  const stray: string[][] = [];
  assert.equal((await sampled(['x'], stray)).get('x')!.responses[0].policyLogp, -1);
  assert.deepEqual(stray, [['x']]);
});
