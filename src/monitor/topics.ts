import { parseTopicName, topicName } from '../../topics/registry.ts';

/** The topics the monitor reads within a run namespace, and which topics belong to that run. */
export function monitorTopics(namespace?: string): { metrics: string; checkpoints: string; belongs(name: string): boolean } {
  return {
    metrics: topicName(namespace, 'metrics'),
    checkpoints: topicName(namespace, 'checkpoints'),
    belongs: (name) => {
      const parsed = parseTopicName(name);
      return parsed !== null && parsed.namespace === (namespace || undefined);
    },
  };
}
