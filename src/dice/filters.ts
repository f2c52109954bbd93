/**
 * Response filters of the official DICE code, applied before α* and pair selection:
 *  - drop a response that hit the token limit without EOS (finishReason 'length'): its text is cut
 *    off, and its length says more about max-new-tokens than about the policy;
 *  - drop a response whose length is outside [minLength, maxLength];
 *  - keep a prompt's group only if at least `minKeptFraction` (default: half) of its K responses
 *    survive (the official code's `n_least_score`), and always at least 2 (a pair needs two).
 */
import { responseLength, type LengthSource, type LengthUnit } from './reward.ts';

/** 'length' means the token limit was hit without EOS; anything else ('stop', 'eos') is a finished response. */
export interface FilterableResponse extends LengthSource {
  finishReason: string;
}

export interface FilterOptions {
  /** Drop responses that hit the token limit without EOS (default true). */
  dropTruncated?: boolean;
  /** Inclusive length bounds in `lengthUnit` (defaults 1 and ∞: empty responses are dropped). */
  minLength?: number;
  maxLength?: number;
  lengthUnit?: LengthUnit;
  /** A group survives when kept ≥ minKeptFraction · K (default 0.5). */
  minKeptFraction?: number;
  /** K, the number of responses asked for per prompt (default: the group's size). */
  k?: number;
}

export interface DropCounts {
  truncated: number;
  tooShort: number;
  tooLong: number;
}

export interface GroupFilterResult<T> {
  /** The surviving responses, in their original order, with their original indices. */
  kept: T[];
  keptIndices: number[];
  dropped: DropCounts;
  /** Whether the whole group is kept (enough responses survived). */
  groupKept: boolean;
}

export interface FilterReport {
  groupsIn: number;
  groupsKept: number;
  /** Groups dropped because fewer than the required number of responses survived. */
  groupsDropped: number;
  responsesIn: number;
  /** Responses in kept groups that survived. */
  responsesKept: number;
  /** Per-response drop reasons over all groups (a response is counted under its first failing check, in this order). */
  dropped: DropCounts;
}

function resolve(options: FilterOptions) {
  const minLength = options.minLength ?? 1;
  const maxLength = options.maxLength ?? Infinity;
  const minKeptFraction = options.minKeptFraction ?? 0.5;
  if (!(minLength >= 0)) throw new Error(`filters: minLength must be ≥ 0, got ${options.minLength}`);
  if (!(maxLength >= minLength)) throw new Error(`filters: maxLength (${options.maxLength}) must be ≥ minLength (${minLength})`);
  if (!(minKeptFraction >= 0 && minKeptFraction <= 1)) {
    throw new Error(`filters: minKeptFraction must be in [0, 1], got ${options.minKeptFraction}`);
  }
  if (options.k !== undefined && !(Number.isInteger(options.k) && options.k >= 1)) {
    throw new Error(`filters: k must be a positive integer, got ${options.k}`);
  }
  return { dropTruncated: options.dropTruncated ?? true, minLength, maxLength, minKeptFraction, unit: options.lengthUnit ?? 'chars' };
}

/** Filters one prompt's group of responses. */
export function filterGroup<T extends FilterableResponse>(responses: readonly T[], options: FilterOptions = {}): GroupFilterResult<T> {
  const o = resolve(options);
  const dropped: DropCounts = { truncated: 0, tooShort: 0, tooLong: 0 };
  const kept: T[] = [];
  const keptIndices: number[] = [];
  responses.forEach((r, i) => {
    if (o.dropTruncated && r.finishReason === 'length') {
      dropped.truncated++;
      return;
    }
    const len = responseLength(r, o.unit);
    if (len < o.minLength) dropped.tooShort++;
    else if (len > o.maxLength) dropped.tooLong++;
    else {
      kept.push(r);
      keptIndices.push(i);
    }
  });
  const k = options.k ?? responses.length;
  // Integer form of kept ≥ fraction·K that does not trip over 0.5·K rounding.
  const needed = Math.max(2, Math.ceil(o.minKeptFraction * k - 1e-9));
  return { kept, keptIndices, dropped, groupKept: kept.length >= needed };
}

/** Filters many groups; returns the kept groups (responses filtered) and counts of what was dropped and why. */
export function filterGroups<G, T extends FilterableResponse>(
  groups: readonly G[],
  responsesOf: (group: G) => readonly T[],
  options: FilterOptions = {},
): { kept: Array<{ group: G; result: GroupFilterResult<T> }>; report: FilterReport } {
  const report: FilterReport = {
    groupsIn: groups.length,
    groupsKept: 0,
    groupsDropped: 0,
    responsesIn: 0,
    responsesKept: 0,
    dropped: { truncated: 0, tooShort: 0, tooLong: 0 },
  };
  const kept: Array<{ group: G; result: GroupFilterResult<T> }> = [];
  for (const group of groups) {
    const responses = responsesOf(group);
    const result = filterGroup(responses, options);
    report.responsesIn += responses.length;
    report.dropped.truncated += result.dropped.truncated;
    report.dropped.tooShort += result.dropped.tooShort;
    report.dropped.tooLong += result.dropped.tooLong;
    if (result.groupKept) {
      report.groupsKept++;
      report.responsesKept += result.kept.length;
      kept.push({ group, result });
    } else {
      report.groupsDropped++;
    }
  }
  return { kept, report };
}
