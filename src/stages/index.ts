import { alphaStage } from './alpha.ts';
import { replayStage } from './replay.ts';
import { sampleStage } from './sample.ts';
import { scoreStage } from './score.ts';
import { trainStage } from './train.ts';

/** The stages of a round, in Algorithm 1's order. */
export const STAGES = [sampleStage, scoreStage, alphaStage, replayStage, trainStage] as const;

/** Every metrics event some stage emits (the monitor page reads only these; see src/monitor/page-fields.ts). */
export type EmittedEvent = (typeof STAGES)[number]['emits'][number];

export { alphaStage, replayStage, sampleStage, scoreStage, trainStage };
