import { bufferCount, filter, map, type OperatorFunction } from 'rxjs';
import type { PairSide, PreferencePair } from '../topics/pairs.ts';
import type { ScoredGroup, ScoredResponse } from '../topics/scored.ts';
import { packGroups, solveAlpha, type AlphaSolution } from '../src/dice/alpha.ts';
import { filterGroups, type FilterOptions, type FilterReport } from '../src/dice/filters.ts';
import { selectPairs, windowLengthStats, type WindowLengthStats } from '../src/dice/pairs.ts';
import { responseLength, type LengthUnit } from '../src/dice/reward.ts';

export interface AlphaOptions {
  round: number;
  /** optimal: α* of Eq. 6; fixed: `value`. */
  mode: 'optimal' | 'fixed';
  value?: number;
  /** Multiplies the chosen α (the paper's 2α* ablation). */
  multiplier?: number;
  maxAlpha?: number;
  lengthUnit: LengthUnit;
  filters: FilterOptions;
  /** Groups per window; the source's completion closes the last (default: the whole round, up to the cap). */
  windowSize?: number;
  windowCap?: number;
  /** Numbering of this operator's windows starts here (resume). */
  firstWindowId?: number;
}

/** One α window: its pairs and what the monitor and the report show about it. */
export interface AlphaWindow {
  windowId: number;
  round: number;
  alpha: number;
  /** The exact solution (null when α is fixed or no group survived the filters). */
  solution: AlphaSolution | null;
  /** Length differences |y_w| − |y_l| before (α = 0) and after shaping (paper Fig. 2). */
  lengths: WindowLengthStats | null;
  filter: FilterReport;
  pairs: PreferencePair[];
}

/**
 * scored → pairs, one window at a time: the official code's filters, then α* = argmin_α
 * |mean(|y_w| − |y_l|)| found exactly over the window (src/dice/alpha.ts), then each group's best
 * and worst response under the shaped reward r − α|y| as a pair.
 *
 *   s1-s2-s3-s4-|  alpha(windowSize 2)  ----w0----w1|   (w = { α*, stats, pairs })
 */
export function alphaPairs(options: AlphaOptions): OperatorFunction<ScoredGroup, AlphaWindow> {
  const size = Math.min(options.windowSize || Infinity, options.windowCap ?? 100_000);
  let windowId = options.firstWindowId ?? 0;
  return (scored$) =>
    scored$.pipe(
      bufferCount(size),
      filter((groups) => groups.length > 0),
      map((groups) => buildWindow(groups, windowId++, options)),
    );
}

export function buildWindow(groups: ScoredGroup[], windowId: number, options: AlphaOptions): AlphaWindow {
  const unit = options.lengthUnit;
  const { kept, report } = filterGroups(groups, (g) => g.responses, { ...options.filters, lengthUnit: unit });
  const window: AlphaWindow = { windowId, round: options.round, alpha: 0, solution: null, lengths: null, filter: report, pairs: [] };
  if (kept.length === 0) return window;
  const packed = packGroups(
    kept.map(({ result }) => ({ rewards: result.kept.map((r) => r.reward), lengths: result.kept.map((r) => responseLength(r, unit)) })),
  );
  let alpha = options.value ?? 0;
  if (options.mode === 'optimal') {
    window.solution = solveAlpha(packed, { maxAlpha: options.maxAlpha });
    alpha = window.solution.alpha;
  }
  alpha *= options.multiplier ?? 1;
  window.alpha = alpha;
  window.lengths = windowLengthStats(packed, alpha);
  const { chosen, rejected } = selectPairs(packed, alpha);
  window.pairs = kept.map(({ group, result }, g) => {
    const base = packed.offsets[g];
    return {
      pairId: `gen-${group.round}-${group.promptId}`,
      promptId: group.promptId,
      prompt: group.prompt,
      promptTokenIds: group.promptTokenIds,
      round: group.round,
      windowId,
      alpha,
      source: 'generated',
      chosen: side(result.kept[chosen[g] - base]),
      rejected: side(result.kept[rejected[g] - base]),
    };
  });
  return window;
}

function side(r: ScoredResponse): PairSide {
  // The trainer's reference is π_θ(t−1), the policy that sampled: its log-prob is already known.
  return { text: r.text, tokenIds: r.tokenIds, charLength: r.charLength, tokenLength: r.tokenLength, logp: r.policyLogp, reward: r.reward };
}
