/**
 * Names of the topics the monitor reads within a run namespace.
 * TODO(registry): take these from topics/registry.ts once it lands.
 */
export function monitorTopics(namespace?: string): { metrics: string; checkpoints: string; belongs(name: string): boolean } {
  const prefix = namespace ? `${namespace}.` : '';
  return {
    metrics: `${prefix}metrics`,
    checkpoints: `${prefix}checkpoints`,
    belongs: (name) => (namespace ? name.startsWith(prefix) : !name.includes('.')),
  };
}
