import { enumeration, float64, int32, struct, tokens, utf8 } from './codec.ts';
import { checkLengths, schemaOf } from './common.ts';
import { arrowContract } from './contract.ts';
import { Field } from 'apache-arrow';

export const pairSources = ['generated', 'offline'] as const;
export type PairSource = (typeof pairSources)[number];

/** One side of a preference pair. */
export interface PairSide {
  text: string;
  tokenIds: Int32Array;
  charLength: number;
  tokenLength: number;
  /** log π_θ(t−1)(y|x): the reference of this round's DPO training, so the trainer needs no reference pass. */
  logp: number;
  /** The implicit reward the pair was chosen by; null for offline pairs. */
  reward: number | null;
}

/** A chosen/rejected pair for DPO training. Key: promptId. */
export interface PreferencePair {
  pairId: string;
  promptId: string;
  prompt: string;
  promptTokenIds: Int32Array;
  round: number;
  /** The scoring window whose α* picked the pair; null for offline pairs. */
  windowId: number | null;
  /** α* of that window (paper Eq. 6); null for offline pairs. */
  alpha: number | null;
  source: PairSource;
  chosen: PairSide;
  rejected: PairSide;
}

const side = struct([
  utf8('text'),
  tokens('tokenIds'),
  int32('charLength'),
  int32('tokenLength'),
  float64('logp'),
  float64('reward', true),
]);

export const pairsSchema = schemaOf([
  utf8('pairId'),
  utf8('promptId'),
  utf8('prompt'),
  tokens('promptTokenIds'),
  int32('round'),
  int32('windowId', true),
  float64('alpha', true),
  enumeration('source', pairSources),
  new Field('chosen', side, false),
  new Field('rejected', side, false),
]);

export const pairsTopic = arrowContract<PreferencePair>({
  name: 'pairs',
  schema: pairsSchema,
  defaultPartitions: 4,
  keyOf: (p) => p.promptId,
  check(p, fail) {
    if (p.pairId.length === 0) fail('pairId', 'must not be empty');
    checkLengths(p.chosen, 'chosen', fail);
    checkLengths(p.rejected, 'rejected', fail);
    if (p.source === 'generated') {
      if (p.alpha === null) fail('alpha', 'a generated pair needs its window α*');
      if (p.windowId === null) fail('windowId', 'a generated pair needs its window id');
      if (p.chosen.reward === null) fail('chosen.reward', 'a generated pair needs rewards');
      if (p.rejected.reward === null) fail('rejected.reward', 'a generated pair needs rewards');
    }
  },
});
