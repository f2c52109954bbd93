import type { GenerateParams, SampleRequest, SampleResult } from '../src/engine/sampler.ts';
import type { ScoreOutput, ScoreRequest } from '../src/engine/scorer.ts';

/**
 * What the operators need from the engines. The real Sampler/Scorer (worker-hosted onnxruntime)
 * satisfy these structurally; unit tests inject small deterministic fakes.
 */
export interface SamplerPort {
  generate(requests: SampleRequest[], params: Partial<GenerateParams>): Promise<SampleResult[]>;
}

export interface ScorerPort {
  score(items: ScoreRequest[]): Promise<ScoreOutput[]>;
}

/** A per-record failure that goes to the dead-letter topic while the stream goes on. */
export interface Rejected {
  kind: 'rejected';
  key: string;
  error: string;
}
