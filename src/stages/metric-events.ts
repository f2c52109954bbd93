/**
 * The metrics events of the pipeline, one type per event: what the stages emit (through their
 * descriptors' projections), what the monitor page charts (src/monitor/page-fields.ts) and what
 * the report and archive read back. Keyed `stage/type`, as on the metrics topic
 * ({stage, type, time, round, ...fields}).
 */

export type StageName = 'sample' | 'score' | 'alpha' | 'replay' | 'train' | 'health';

export interface StageTimeEvent {
  seconds: number;
  /** Of which in the engines (loading, sampling, scoring, training); the rest is bus and orchestration. */
  engineSeconds: number;
  overheadSeconds: number;
}

export interface PipelineEvents {
  'run/config': {
    /** The validated config as JSON (what a replay re-derives with). */
    config: string;
    policyDir: string;
    refDir: string;
    promptsFile: string;
    offlineFile: string | null;
    onnxruntime: string;
    threads: number;
    node: string;
    /** Which executor recorded it: `dice serve` records its own config since bounded staleness; absent: `dice run`. */
    executor?: 'run' | 'serve';
  };
  'round/start': { policyVersion: number; referenceVersion: number; trainingReferenceVersion: number; prompts: number };
  'sample/group': {
    promptId: string;
    policyVersion: number;
    tokens: number;
    /** Tokens per second of this stage so far. */
    tokensPerSecond: number;
    /** Mean response length in characters. */
    meanLength: number;
    /** Responses cut at max new tokens. */
    truncated: number;
    /** Input records not yet committed by the stage (see StageProgress.lag). */
    lag: number;
  };
  'score/group': { promptId: string; policyVersion: number; meanReward: number; rewardSpread: number; lag: number };
  /** A group of an older policy than the one scoring/training (strictly on-policy): committed without output. */
  'score/stale-dropped': { promptId: string; policyVersion: number };
  'alpha/window': {
    windowId: number;
    alpha: number;
    /** Eq. 6 at α* (null: α fixed, or no group survived the filters). */
    objective: number | null;
    /** Mean |y_w| − |y_l| before (α = 0) and after shaping (paper Fig. 2). */
    lengthDiffBefore: number | null;
    lengthDiffAfter: number | null;
    groupsIn: number;
    groupsKept: number;
    pairs: number;
    truncatedDropped: number;
  };
  'replay/mix': { size: number; offline: number; generated: number; offlineExcluded: number; gamma: number };
  'train/step': {
    step: number;
    /** Steps of the run so far, this one included (1, 2, …, across rounds): the x axis that does not restart each round. */
    globalStep: number;
    loss: number;
    rewardAccuracy: number;
    chosenReward: number;
    rejectedReward: number;
    margin: number;
    gradNorm: number;
    lr: number;
    tokensPerSecond: number;
  };
  /** A scored group the trainer did not take: its round was already trained, or its sampler is more than serve.maxStaleness versions behind. */
  'train/stale-dropped': { promptId: string; policyVersion: number; round: number; staleness: number };
  /**
   * `dice serve`: how many versions behind the round's policy the sampler of each training pair was
   * (bounded staleness). `histogram[s]`: pairs of staleness s, as JSON; `dropped`: groups dropped as
   * too stale since the previous round.
   */
  'train/staleness': { policyVersion: number; maxStaleness: number; groups: number; pairs: number; histogram: string; meanStaleness: number; dropped: number };
  /**
   * `dice serve`: one role's time over one round (from the policy it trains from being published to
   * the round's version being published), split into busy (engine work, or training the round) and
   * waiting.
   */
  'serve/role-time': { role: string; seconds: number; busySeconds: number; waitingSeconds: number; utilisation: number };
  /** `dice serve`: a role's engine moved to another model version (after the group in flight finished on the old one). */
  'serve/engine-switch': { role: string; fromVersion: number | null; toVersion: number; seconds: number };
  /** The health of v_t before promotion (src/stages/health.ts); null: not measured (no probes). */
  'health/version': {
    version: number;
    parentVersion: number;
    promoted: boolean;
    roundAccuracy: number;
    cumulativeAccuracy: number;
    previousCumulativeAccuracy: number;
    rankingTau: number | null;
    probeLength: number | null;
    lengthChange: number | null;
    kl: number | null;
  };
  /** The gate rejected v_t: samplers and scorers stay on parentVersion (the monitor's alert line). */
  'health/gate-failed': { version: number; parentVersion: number; reasons: string };
  'checkpoint/published': { version: number; parentVersion: number | null; referenceVersion: number | null; sha256: string; finalLoss: number | null };
}

/** `${stage}/stage-time`: a stage's wall and engine seconds in one round of `dice run`. */
export type StageTimeEvents = { [S in StageName as `${S}/stage-time`]: StageTimeEvent };

export type AllPipelineEvents = PipelineEvents & StageTimeEvents;
export type PipelineEventName = keyof AllPipelineEvents;

/** The stage and type of an event name (`alpha/window` → alpha, window). */
export function splitEventName(name: PipelineEventName): { stage: string; type: string } {
  const slash = name.indexOf('/');
  return { stage: name.slice(0, slash), type: name.slice(slash + 1) };
}
