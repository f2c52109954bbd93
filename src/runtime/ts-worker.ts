import { Worker, type WorkerOptions } from 'node:worker_threads';

const bootstrap = new URL('./ts-worker-bootstrap.mjs', import.meta.url);

/**
 * Starts a worker thread running a TypeScript module (loaded through tsx in that thread).
 * `entry` is the module's URL, e.g. `new URL('./sampler-worker.ts', import.meta.url)`.
 */
export function startTsWorker(entry: URL, workerData: Record<string, unknown> = {}, options: WorkerOptions = {}): Worker {
  return new Worker(bootstrap, { ...options, workerData: { ...workerData, __entry: entry.href } });
}
