import { Utf8 } from 'apache-arrow';
import { enumeration, float64, int32, listOf, utf8 } from './codec.ts';
import { schemaOf } from './common.ts';
import { jsonContract } from './contract.ts';

/**
 * Resume and re-derivation state of a run, apart from the metrics a monitor reads: a whole-round
 * stage's completion marker ('done', written in the same transaction as the stage's outputs and input
 * commits), a replay's seeding ('seeded': which recording, from which stage), and a round's prompt
 * order ('prompts': the sample stage's engine batches are cut from it, and the prompts topic, with
 * several partitions, does not keep it). JSON on the wire. Key: stage.
 */
export interface StageMarker {
  kind: 'done' | 'seeded' | 'prompts';
  stage: string;
  /** The round the marker is about (null: the whole run, e.g. a replay's seeding). */
  round: number | null;
  /** Milliseconds since epoch. */
  time: number;
  /** A seeded replay: the recording it came from and the stage it was taken up to. */
  from: string | null;
  fromStage: string | null;
  recordedNamespace: string | null;
  /** 'prompts': the round's prompt ids in the order `dice run` took them. */
  promptIds?: string[] | null;
}

export const markersSchema = schemaOf([
  enumeration('kind', ['done', 'seeded', 'prompts']),
  utf8('stage'),
  int32('round', true),
  float64('time'),
  utf8('from', true),
  utf8('fromStage', true),
  utf8('recordedNamespace', true),
  listOf('promptIds', new Utf8(), true),
]);

export const markersTopic = jsonContract<StageMarker>({
  name: 'markers',
  schema: markersSchema,
  defaultPartitions: 1,
  keyOf: (m) => m.stage,
  normalize: (v) => ({ from: null, fromStage: null, recordedNamespace: null, promptIds: null, ...v }),
});

/** A whole-round stage's completion marker. */
export function doneMarker(stage: string, round: number, time = Date.now()): StageMarker {
  return { kind: 'done', stage, round, time, from: null, fromStage: null, recordedNamespace: null, promptIds: null };
}

/** Round t's prompts in the order `dice run` cut them into the sample stage's engine batches. */
export function promptOrderMarker(round: number, promptIds: string[], time = Date.now()): StageMarker {
  return { kind: 'prompts', stage: 'sample', round, time, from: null, fromStage: null, recordedNamespace: null, promptIds };
}

/** The first 'prompts' marker of each round wins (a round's order never changes). */
export function promptOrdersOf(markers: readonly StageMarker[]): Map<number, string[]> {
  const orders = new Map<number, string[]>();
  for (const m of markers) if (m.kind === 'prompts' && m.round !== null && m.promptIds && !orders.has(m.round)) orders.set(m.round, m.promptIds);
  return orders;
}
