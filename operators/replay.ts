import { concatMap, from, mergeMap, toArray, type Observable, type OperatorFunction } from 'rxjs';
import type { BatchRow, TrainingBatch } from '../topics/batches.ts';
import type { OfflinePair } from '../topics/offline.ts';
import type { PreferencePair } from '../topics/pairs.ts';
import { cutBatches, mixReplay, type ReplayMix } from '../src/dice/replay.ts';
import type { ScoreRequest } from '../src/engine/scorer.ts';
import type { ScorerPort } from './ports.ts';

export interface ReplayOptions {
  round: number;
  runId: string;
  runSeed: number;
  /** γ: the share of offline pairs (Alg. 1 line 5). */
  gamma: number;
  offline: readonly OfflinePair[];
  /**
   * The training reference (π_θ(t−1) for DICE): gives offline pairs their reference log-probs and
   * token ids. Generated pairs reuse the sampler's log-probs, which are already under π_θ(t−1).
   */
  reference: ScorerPort;
  /** When the reference is not the sampling policy (offline DPO with a fixed reference), generated pairs are rescored too. */
  referenceIsSamplingPolicy: boolean;
  /** Render offline prompts through the chat template, as the sampler rendered generated ones. */
  chat: boolean;
  steps: number;
  batchSize: number;
  /** N of the mix (default: the largest the available pairs allow). */
  size?: number;
  onMix?: (mix: ReplayMix<PreferencePair, OfflinePair>) => void;
}

/**
 * pairs → batches: experience replay. Collects the round's generated pairs, mixes exactly ⌊γ·N⌋
 * offline pairs (prompts disjoint from the round's) into them, gets reference log-probs for the
 * offline ones, shuffles and cuts S batches of B.
 *
 *   p1-p2-p3-|  replay(γ=0.5, B=2, S=3)  ------------(b0 b1 b2)|
 */
export function replay(options: ReplayOptions): OperatorFunction<PreferencePair, TrainingBatch> {
  return (pairs$) =>
    pairs$.pipe(
      toArray(),
      concatMap((generated) => mixAndBatch(generated, options)),
    );
}

function mixAndBatch(generated: PreferencePair[], options: ReplayOptions): Observable<TrainingBatch> {
  const mix = mixReplay<PreferencePair, OfflinePair>({
    generated,
    offline: options.offline,
    gamma: options.gamma,
    promptOfGenerated: (p) => p.prompt,
    promptOfOffline: (p) => p.prompt,
    size: options.size,
    seed: options.runSeed,
    round: options.round,
  });
  options.onMix?.(mix);
  return from(toRows(mix, options)).pipe(
    mergeMap((rows) => {
      if (rows.length === 0) return from([] as TrainingBatch[]); // nothing to train on: the caller reports why
      const { batches } = cutBatches(rows, { batchSize: options.batchSize, steps: options.steps, seed: options.runSeed, round: options.round });
      return from(batches.map((b, step): TrainingBatch => ({ round: options.round, step, runId: options.runId, rows: b })));
    }),
  );
}

async function toRows(mix: ReplayMix<PreferencePair, OfflinePair>, options: ReplayOptions): Promise<BatchRow[]> {
  const needScoring = mix.pairs.filter((m) => m.source === 'offline' || !options.referenceIsSamplingPolicy);
  const requests = needScoring.flatMap((m): ScoreRequest[] => {
    if (m.source === 'generated') {
      const p = m.pair;
      return [p.chosen, p.rejected].map((s) => ({ promptTokenIds: Array.from(p.promptTokenIds), responseTokenIds: Array.from(s.tokenIds) }));
    }
    const p = m.pair;
    return [answerText(p, 'chosen'), answerText(p, 'rejected')].map((response) => ({ prompt: p.prompt, chat: options.chat, response }));
  });
  const scores = requests.length > 0 ? await options.reference.score(requests) : [];
  const scored = new Map<object, BatchRow>();
  needScoring.forEach((m, i) => {
    const [c, r] = [scores[2 * i], scores[2 * i + 1]];
    scored.set(m, {
      pairId: m.pair.pairId,
      source: m.source,
      promptTokenIds: Int32Array.from(c.promptTokenIds),
      chosenTokenIds: Int32Array.from(c.responseTokenIds),
      rejectedTokenIds: Int32Array.from(r.responseTokenIds),
      chosenRefLogp: c.logProb,
      rejectedRefLogp: r.logProb,
    });
  });
  return mix.pairs.map((m) => {
    const row = scored.get(m);
    if (row) return row;
    const p = m.pair as PreferencePair;
    return {
      pairId: p.pairId,
      source: 'generated',
      promptTokenIds: p.promptTokenIds,
      chosenTokenIds: p.chosen.tokenIds,
      rejectedTokenIds: p.rejected.tokenIds,
      chosenRefLogp: p.chosen.logp,
      rejectedRefLogp: p.rejected.logp,
    };
  });
}

/** An offline answer as text: the text column, or the last assistant turn of a message list (ultrafeedback_binarized). */
export function answerText(p: OfflinePair, side: 'chosen' | 'rejected'): string {
  const text = side === 'chosen' ? p.chosen : p.rejected;
  if (text !== null) return text;
  const messages = (side === 'chosen' ? p.chosenMessages : p.rejectedMessages) ?? [];
  const last = [...messages].reverse().find((m) => m.role === 'assistant');
  if (!last) throw new Error(`offline pair ${p.pairId}: ${side} has neither text nor an assistant message`);
  return last.content;
}
