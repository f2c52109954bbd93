import { float64, int32, listOf, struct } from './codec.ts';
import { schemaOf } from './common.ts';
import { arrowContract } from './contract.ts';
import { checkGroup, groupFields, sampleResponseFields, type SampleResponse, type SamplesGroup } from './samples.ts';

/** A sampled response with its reference log-prob and implicit reward. */
export interface ScoredResponse extends SampleResponse {
  /** log π_ref(y|x), summed like policyLogp. */
  refLogp: number;
  /** Implicit reward β·(policyLogp − refLogp) (paper Eq. 4). */
  reward: number;
}

/** A samples group scored against the reference. Key: promptId. */
export interface ScoredGroup extends Omit<SamplesGroup, 'responses'> {
  referenceVersion: number;
  beta: number;
  responses: ScoredResponse[];
}

export const scoredSchema = schemaOf([
  ...groupFields,
  int32('referenceVersion'),
  float64('beta'),
  listOf('responses', struct([...sampleResponseFields, float64('refLogp'), float64('reward')])),
]);

export const scoredTopic = arrowContract<ScoredGroup>({
  name: 'scored',
  schema: scoredSchema,
  defaultPartitions: 4,
  keyOf: (g) => g.promptId,
  check(g, fail) {
    checkGroup(g, fail);
    if (!(g.beta > 0)) fail('beta', `must be positive, got ${g.beta}`);
  },
});
