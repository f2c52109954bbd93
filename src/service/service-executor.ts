import type { TopicRecords } from '../../topics/bus.ts';
import type { TopicBaseName } from '../../topics/registry.ts';
import type { ScoredGroup } from '../../topics/scored.ts';
import { roundInputs, type RoundContext, type RoundStage, type StageEvent } from '../stages/stage.ts';
import type { Logger } from '../util/log.ts';
import { encoded } from './batch-executor.ts';
import type { RoundExecutor } from './dice-round.ts';

/**
 * The service executor's round (`dice serve`, trainer role): the sampler and scorer roles ran the
 * per-record stages continuously; from the round's N scored groups on, each stage takes the
 * previous stage's outputs from memory, and `outputs` holds what the round writes — committed
 * together with the N groups' offsets, as one unit, by the caller.
 */
export class ServiceRoundExecutor implements RoundExecutor {
  readonly outputs: TopicRecords[] = [];
  private readonly held = new Map<TopicBaseName, unknown[]>();

  constructor(
    scored: ScoredGroup[],
    private readonly T: (base: TopicBaseName) => string,
    private readonly emit: (e: StageEvent) => void,
    private readonly log: Logger,
  ) {
    this.held.set('scored', scored);
  }

  /** Sampling and scoring are the other roles' work: their outputs are the round's scored groups. */
  async records(): Promise<void> {}

  async round<In, Out, D, R>(stage: RoundStage<In, Out, D, R>, deps: D, ctx: RoundContext): Promise<R> {
    const inputs = roundInputs(stage, (this.held.get(stage.input.topic) ?? []) as In[], ctx);
    const result = await stage.derive(inputs, deps, ctx);
    const outputs = stage.outputs(result);
    this.held.set(stage.output.topic, outputs);
    this.outputs.push({ topic: this.T(stage.output.topic), records: outputs.map((v) => encoded(stage.output, v)) });
    for (const e of stage.project(result, ctx)) this.emit(e);
    for (const line of stage.logLines(result)) this.log.info(line.msg, line.fields);
    return result;
  }
}
