import { from, lastValueFrom, toArray } from 'rxjs';
import { pairsTopic, type PreferencePair } from '../../topics/pairs.ts';
import { scoredTopic, type ScoredGroup } from '../../topics/scored.ts';
import { alphaPairs, type AlphaWindow } from '../../operators/alpha.ts';
import { alphaOptions } from '../service/round-config.ts';
import { byKey, stageEvent, type RoundStage } from './stage.ts';

/**
 * Alg. 1 line 4 (second half) — scored → pairs: the official code's filters, α* of Eq. 6 per window
 * of `alpha.window` groups (exactly: src/dice/alpha.ts:solveAlpha), and each group's best and worst
 * response under the shaped reward r − α*|y| (Eq. 5, src/dice/pairs.ts:selectPairs) as D(α*).
 * Groups in promptId order, so the windows do not depend on arrival order.
 */
export const alphaStage: RoundStage<ScoredGroup, PreferencePair, null, AlphaWindow[], 'alpha/window'> = {
  kind: 'whole-round',
  name: 'alpha',
  input: { topic: 'scored', contract: scoredTopic, key: (g) => g.promptId },
  output: { topic: 'pairs', contract: pairsTopic, key: (p) => p.promptId },
  emits: ['alpha/window'],
  inRound: (g, ctx) => g.round === ctx.versions.round,
  order: byKey((g) => g.promptId),
  derive: (groups, _deps, ctx) =>
    lastValueFrom(from(groups).pipe(alphaPairs(alphaOptions(ctx.config, ctx.versions.round)), toArray()), { defaultValue: [] as AlphaWindow[] }),
  logLines: (windows) =>
    windows.map((w) => ({
      msg: 'alpha window',
      fields: { windowId: w.windowId, alpha: w.alpha, lengthDiffBefore: w.lengths?.before.stats.mean, lengthDiffAfter: w.lengths?.after.stats.mean, pairs: w.pairs.length },
    })),
  outputs: (windows) => windows.flatMap((w) => w.pairs),
  project: (windows) =>
    windows.map((w) =>
      stageEvent('alpha/window', {
        windowId: w.windowId,
        alpha: w.alpha,
        objective: w.solution?.objective ?? null,
        lengthDiffBefore: w.lengths?.before.stats.mean ?? null,
        lengthDiffAfter: w.lengths?.after.stats.mean ?? null,
        groupsIn: w.filter.groupsIn,
        groupsKept: w.filter.groupsKept,
        pairs: w.pairs.length,
        truncatedDropped: w.filter.dropped.truncated,
      }),
    ),
};
