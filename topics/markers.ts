import { enumeration, float64, int32, utf8 } from './codec.ts';
import { schemaOf } from './common.ts';
import { jsonContract } from './contract.ts';

/**
 * Resume state of a run, apart from the metrics a monitor reads: a whole-round stage's completion
 * marker ('done', written in the same transaction as the stage's outputs and input commits) and a
 * replay's seeding ('seeded': which recording, from which stage). JSON on the wire. Key: stage.
 */
export interface StageMarker {
  kind: 'done' | 'seeded';
  stage: string;
  /** The round the marker is about (null: the whole run, e.g. a replay's seeding). */
  round: number | null;
  /** Milliseconds since epoch. */
  time: number;
  /** A seeded replay: the recording it came from and the stage it was taken up to. */
  from: string | null;
  fromStage: string | null;
  recordedNamespace: string | null;
}

export const markersSchema = schemaOf([
  enumeration('kind', ['done', 'seeded']),
  utf8('stage'),
  int32('round', true),
  float64('time'),
  utf8('from', true),
  utf8('fromStage', true),
  utf8('recordedNamespace', true),
]);

export const markersTopic = jsonContract<StageMarker>({
  name: 'markers',
  schema: markersSchema,
  defaultPartitions: 1,
  keyOf: (m) => m.stage,
  normalize: (v) => ({ from: null, fromStage: null, recordedNamespace: null, ...v }),
});

/** A whole-round stage's completion marker. */
export function doneMarker(stage: string, round: number, time = Date.now()): StageMarker {
  return { kind: 'done', stage, round, time, from: null, fromStage: null, recordedNamespace: null };
}
