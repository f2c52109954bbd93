/**
 * Retries a call that failed with a retriable Kafka error (a leader not elected yet right after a
 * topic is created, a coordinator loading, a broker restarting) for up to 30 s.
 */
export async function withRetry<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await fn();
    } catch (err) {
      const e = err as { retriable?: boolean; name?: string };
      const retriable = e.retriable === true || e.name === 'KafkaJSConnectionError' || e.name === 'KafkaJSNumberOfRetriesExceeded';
      if (!retriable || Date.now() + delay > deadline) throw err;
      await sleep(delay);
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
