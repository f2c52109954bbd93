import type { Bus } from './bus.ts';
import type { TopicContract } from './contract.ts';
import { batchesTopic } from './batches.ts';
import { checkpointsTopic } from './checkpoints.ts';
import { deadLetterTopic } from './dead-letter.ts';
import { markersTopic } from './markers.ts';
import { metricsTopic } from './metrics.ts';
import { offlineTopic } from './offline.ts';
import { pairsTopic } from './pairs.ts';
import { promptsTopic } from './prompts.ts';
import { samplesTopic } from './samples.ts';
import { scoredTopic } from './scored.ts';

/** Every topic of the pipeline, by base name (DESIGN.md "Topics"). */
export const topicContracts = {
  prompts: promptsTopic,
  samples: samplesTopic,
  scored: scoredTopic,
  pairs: pairsTopic,
  offline: offlineTopic,
  batches: batchesTopic,
  checkpoints: checkpointsTopic,
  metrics: metricsTopic,
  markers: markersTopic,
  'dead-letter': deadLetterTopic,
} as const satisfies Record<string, TopicContract<any>>; // eslint-disable-line @typescript-eslint/no-explicit-any;

export type TopicBaseName = keyof typeof topicContracts;
export const topicBaseNames = Object.keys(topicContracts) as TopicBaseName[];

const NAMESPACE = /^[A-Za-z0-9_-]{1,100}$/;

/**
 * The full topic name in a run's namespace: `${namespace}.${base}` (no namespace: the base name).
 * Namespaces let runs share one bus (or one Kafka cluster) without seeing each other's records.
 */
export function topicName(namespace: string | undefined, base: TopicBaseName): string {
  if (!namespace) return base;
  if (!NAMESPACE.test(namespace)) {
    throw new Error(`topic namespace ${JSON.stringify(namespace)} is invalid: use 1–100 characters of A–Z a–z 0–9 _ -`);
  }
  return `${namespace}.${base}`;
}

/** Splits a full topic name into namespace and base name; null when the base is not a pipeline topic. */
export function parseTopicName(name: string): { namespace: string | undefined; base: TopicBaseName } | null {
  const dot = name.lastIndexOf('.');
  const base = dot < 0 ? name : name.slice(dot + 1);
  if (!(base in topicContracts)) return null;
  return { namespace: dot < 0 ? undefined : name.slice(0, dot), base: base as TopicBaseName };
}

/** The contract of a (possibly namespaced) topic name; throws naming the known topics when there is none. */
export function contractFor(name: string): TopicContract<unknown> {
  const parsed = parseTopicName(name);
  if (!parsed) {
    throw new Error(`unknown topic ${JSON.stringify(name)}: expected one of ${topicBaseNames.join(', ')} (optionally prefixed "namespace.")`);
  }
  return topicContracts[parsed.base] as TopicContract<unknown>;
}

/** Creates every pipeline topic of a namespace (partition counts: the contract defaults unless overridden). */
export async function createPipelineTopics(
  bus: Bus,
  namespace?: string,
  partitions: Partial<Record<TopicBaseName, number>> = {},
): Promise<string[]> {
  const names: string[] = [];
  for (const base of topicBaseNames) {
    const name = topicName(namespace, base);
    await bus.createTopic(name, { partitions: partitions[base] ?? topicContracts[base].defaultPartitions });
    names.push(name);
  }
  return names;
}
