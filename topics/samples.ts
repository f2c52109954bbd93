import type { Field } from 'apache-arrow';
import { enumeration, float64, int32, listOf, struct, tokens, uint32, utf8 } from './codec.ts';
import { checkLengths, schemaOf } from './common.ts';
import { arrowContract } from './contract.ts';

export const finishReasons = ['eos', 'length'] as const;
export type FinishReason = (typeof finishReasons)[number];

/** One sampled response. */
export interface SampleResponse {
  /** Index of the response within its group, 0..K−1. */
  k: number;
  /** The sampling seed: deriveSeed(runSeed, promptId, policyVersion, k). */
  seed: number;
  /** Response token ids (EOS included when finishReason is 'eos'). */
  tokenIds: Int32Array;
  text: string;
  /** Unicode code points of `text` (see charLength). */
  charLength: number;
  /** tokenIds.length. */
  tokenLength: number;
  finishReason: FinishReason;
  /** log π_θ(y|x) of the policy that sampled it: untempered, summed over response tokens, EOS included. */
  policyLogp: number;
}

/** One group: K responses of the current policy to one prompt. Key: promptId. */
export interface SamplesGroup {
  promptId: string;
  /** The prompt as rendered (chat template applied) and its token ids. */
  prompt: string;
  promptTokenIds: Int32Array;
  round: number;
  /** The checkpoint version of the policy that sampled the group. */
  policyVersion: number;
  runSeed: number;
  responses: SampleResponse[];
}

export const sampleResponseFields: Field[] = [
  int32('k'),
  uint32('seed'),
  tokens('tokenIds'),
  utf8('text'),
  int32('charLength'),
  int32('tokenLength'),
  enumeration('finishReason', finishReasons),
  float64('policyLogp'),
];

export const groupFields: Field[] = [
  utf8('promptId'),
  utf8('prompt'),
  tokens('promptTokenIds'),
  int32('round'),
  int32('policyVersion'),
  uint32('runSeed'),
];

export const samplesSchema = schemaOf([...groupFields, listOf('responses', struct(sampleResponseFields))]);

/** Checks shared by samples and scored groups. */
export function checkGroup(g: SamplesGroup, fail: (field: string, problem: string) => never): void {
  if (g.promptId.length === 0) fail('promptId', 'must not be empty');
  if (g.responses.length === 0) fail('responses', 'a group needs at least one response');
  const ks = new Set<number>();
  g.responses.forEach((r, i) => {
    if (ks.has(r.k)) fail(`responses[${i}].k`, `k=${r.k} appears twice in the group`);
    ks.add(r.k);
    checkLengths(r, `responses[${i}]`, fail);
  });
}

export const samplesTopic = arrowContract<SamplesGroup>({
  name: 'samples',
  schema: samplesSchema,
  defaultPartitions: 4,
  keyOf: (g) => g.promptId,
  check: (g, fail) => checkGroup(g, fail),
});
