import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData, type Worker } from 'node:worker_threads';
import { startTsWorker } from '../runtime/ts-worker.ts';

/**
 * A small typed request/response RPC between the main thread and an engine running in a worker
 * thread (onnxruntime's session creation and run() block the thread they run on).
 *
 *   host:   const h = await startEngine<Api>(new URL('./x-worker.ts', import.meta.url), init);
 *           await h.call('method', ...args);  await h.close();
 *   worker: serveEngine(async (init) => ({ method: async (...args) => ..., close: async () => ... }));
 *
 * Calls run one at a time in the worker, in the order they were made. Arguments and results are
 * structured-cloned. An error thrown in the worker rejects the call with the same message; a worker
 * that dies rejects every pending call.
 */

// biome-ignore lint: any is what lets methods keep their own parameter types
export type EngineApi = Record<string, (...args: any[]) => Promise<unknown>>;

type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };
type Request = { id: number; method: string; args: unknown[] };

export interface EngineHandle<Api extends EngineApi> {
  call<M extends keyof Api & string>(method: M, ...args: Parameters<Api[M]>): Promise<Awaited<ReturnType<Api[M]>>>;
  /** Runs the engine's close() in the worker, then ends the worker. */
  close(): Promise<void>;
}

export async function startEngine<Api extends EngineApi>(entry: URL, init: unknown): Promise<EngineHandle<Api>> {
  const worker: Worker = startTsWorker(entry, { init });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let dead: Error | null = null;
  const failAll = (err: Error) => {
    dead = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  // Listeners are removed one by one: Worker keeps internal listeners (removeAllListeners breaks it).
  const startup: Array<[string, (...a: any[]) => void]> = [];
  await new Promise<void>((resolve, reject) => {
    const onMessage = (m: { type: string; error?: string }) => {
      if (m.type === 'ready') resolve();
      else if (m.type === 'failed') reject(new Error(m.error));
    };
    const onExit = (code: number) => reject(new Error(`engine worker exited with code ${code} before it was ready`));
    startup.push(['message', onMessage], ['error', reject], ['exit', onExit]);
    for (const [event, fn] of startup) worker.once(event, fn);
  }).catch(async (err) => {
    await worker.terminate();
    throw err;
  });
  for (const [event, fn] of startup) worker.off(event, fn);
  worker.on('message', (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error));
  });
  worker.on('error', (err) => failAll(new Error(`engine worker failed: ${err.message}`)));
  const onExit = (code: number) => failAll(new Error(`engine worker exited (code ${code})`));
  worker.on('exit', onExit);

  const call = (method: string, args: unknown[]) =>
    new Promise<unknown>((resolve, reject) => {
      if (dead) return reject(dead);
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, method, args } satisfies Request);
    });
  return {
    call: (method, ...args) => call(method, args) as never,
    close: async () => {
      if (dead) return;
      try {
        await call('close', []);
      } finally {
        worker.off('exit', onExit);
        dead = new Error('engine is closed');
        await worker.terminate();
      }
    },
  };
}

/** Worker side: builds the engine from the host's `init`, then answers calls until closed. */
export function serveEngine<Init, Api extends EngineApi>(open: (init: Init) => Promise<Api & { close(): Promise<void> }>): void {
  const port = parentPort;
  if (!port) throw new Error('serveEngine must run in a worker thread');
  open((workerData as { init: Init }).init).then(
    (api) => {
      collectGarbage(); // the weights and model bytes the engine was built from are garbage now
      let chain = Promise.resolve();
      port.on('message', (req: Request) => {
        chain = chain.then(async () => {
          try {
            const fn = api[req.method];
            if (typeof fn !== 'function') throw new Error(`engine has no method '${req.method}'`);
            const result = await fn.apply(api, req.args);
            port.postMessage({ id: req.id, ok: true, result } satisfies Reply);
          } catch (err) {
            port.postMessage({ id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) } satisfies Reply);
          }
        });
      });
      port.postMessage({ type: 'ready' });
    },
    (err: unknown) => port.postMessage({ type: 'failed', error: err instanceof Error ? err.message : String(err) }),
  );
}

/**
 * A full GC now. Engines are built from ~weights-sized buffers (file, serialized graph) that V8 would
 * otherwise keep until some later collection, doubling the resident memory of a long-lived worker.
 */
export function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}
