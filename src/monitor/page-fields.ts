import type { Checkpoint } from '../../topics/checkpoints.ts';
import type { AllPipelineEvents, PipelineEventName } from '../stages/metric-events.ts';

/**
 * What the dashboard page (page/app.js) reads: per metrics event type, the fields it charts with
 * `field(e, kind, name)` (numbers; `flag` and `text` for booleans and strings). Typed against the events the stages emit, so renaming an emitted field
 * fails to compile here; test/monitor/page-fields.test.ts checks that app.js reads exactly these
 * and that some stage emits each event type.
 */
export const PAGE_READS = {
  'round/start': ['policyVersion', 'referenceVersion'],
  'sample/group': ['tokensPerSecond', 'lag'],
  'score/group': ['lag'],
  'alpha/window': ['alpha', 'lengthDiffBefore', 'lengthDiffAfter'],
  'train/step': ['globalStep', 'loss', 'rewardAccuracy', 'margin'],
  'checkpoint/published': ['version', 'parentVersion', 'referenceVersion'],
  'health/version': ['version', 'parentVersion', 'promoted', 'roundAccuracy', 'cumulativeAccuracy', 'previousCumulativeAccuracy', 'rankingTau', 'probeLength', 'lengthChange', 'kl'],
  'health/gate-failed': ['version', 'parentVersion', 'reasons'],
  'serve/role-time': ['role', 'busySeconds', 'waitingSeconds', 'utilisation'],
  'serve/engine-switch': ['role', 'fromVersion', 'toVersion', 'seconds'],
  'train/staleness': ['policyVersion', 'histogram', 'meanStaleness', 'maxStaleness', 'dropped'],
} as const satisfies { [K in PipelineEventName]?: ReadonlyArray<keyof AllPipelineEvents[K] & string> };

/** Fields of a checkpoints-topic record (the monitor makes it a `checkpoint` event) the page reads with `num(e, name)`. */
export const PAGE_READS_CHECKPOINT_RECORD = ['version', 'parentVersion', 'referenceVersion'] as const satisfies ReadonlyArray<keyof Checkpoint>;

export type PageEvent = keyof typeof PAGE_READS;
