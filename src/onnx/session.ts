import * as ort from 'onnxruntime-node';
import type { DType, HostTensor } from '../model/tensor.ts';

/**
 * Creating and running onnxruntime sessions from our graphs. Both calls block the thread they run
 * on, so engines call these from worker threads (src/runtime/ts-worker.ts).
 */

export type ExecutionProvider = 'cpu' | 'webgpu' | 'cuda';

export interface SessionConfig {
  provider?: ExecutionProvider;
  /** Intra-op threads. Fixed for determinism: parallel reductions may reorder sums. Default 1. */
  threads?: number;
  optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** onnxruntime's CPU memory arena (default true). Off: intermediates go back to the system after each run. */
  memArena?: boolean;
  /** Reuse of planned intermediate buffers across runs of equal shapes (default true). */
  memPattern?: boolean;
  /**
   * Whether idle intra-op threads spin between parallel sections (onnxruntime's default: yes). Off
   * frees the cores for other work between steps (host-side sampling, other engines, a busy machine).
   */
  spinning?: boolean;
  /** Session config entries, e.g. { 'session.disable_prepacking': '1' }. */
  configEntries?: Record<string, string>;
}

/** Throws a clear error when the provider is not available in this onnxruntime-node install. */
export function checkProvider(provider: ExecutionProvider): void {
  const backends = ort.listSupportedBackends();
  const found = backends.find((b) => b.name === provider);
  if (!found) {
    throw new Error(
      `execution provider '${provider}' is not available in onnxruntime-node ${ort.env.versions.common}` +
        ` (available: ${backends.map((b) => b.name).join(', ')})`,
    );
  }
  if (!found.bundled && provider === 'cuda') {
    throw new Error(
      "execution provider 'cuda' needs onnxruntime-node's CUDA libraries, which are not bundled: reinstall with " +
        '`npm install onnxruntime-node --onnxruntime-node-install=cuda12` on a machine with CUDA 12',
    );
  }
}

export async function createSession(model: Uint8Array, config: SessionConfig = {}): Promise<ort.InferenceSession> {
  const provider = config.provider ?? 'cpu';
  checkProvider(provider);
  try {
    return await ort.InferenceSession.create(model, {
      executionProviders: [provider],
      intraOpNumThreads: config.threads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: config.optimization ?? 'all',
      enableCpuMemArena: config.memArena ?? true,
      enableMemPattern: config.memPattern ?? true,
      extra: unflatten({
        ...(config.spinning === undefined ? {} : { 'session.intra_op.allow_spinning': config.spinning ? '1' : '0' }),
        ...config.configEntries,
      }),
    });
  } catch (err) {
    throw new Error(`onnxruntime could not load the graph on '${provider}': ${(err as Error).message}`);
  }
}

/** 'a.b.c' keys → nested objects: onnxruntime-node joins the `extra` object's keys with dots. */
function unflatten(entries: Record<string, string>): Record<string, unknown> {
  const root: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entries)) {
    const parts = key.split('.');
    let node = root;
    for (const p of parts.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[parts[parts.length - 1]] = value;
  }
  return root;
}

const ORT_TYPE: Partial<Record<DType, ort.Tensor.Type>> = {
  float32: 'float32',
  float64: 'float64',
  float16: 'float16',
  int64: 'int64',
  int32: 'int32',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

/** Wraps a host tensor without copying (onnxruntime reads inputs in place). */
export function toOrt(t: HostTensor): ort.Tensor {
  const type = ORT_TYPE[t.dtype];
  if (!type) throw new Error(`dtype ${t.dtype} cannot be passed to onnxruntime`);
  return new ort.Tensor(type, t.data as never, t.shape);
}

export function fromOrt(t: ort.Tensor): HostTensor {
  return { dtype: t.type as DType, shape: [...t.dims], data: t.data as HostTensor['data'] };
}

/** Runs a session on named host tensors; returns the requested outputs (all by default). */
export async function runSession(
  session: ort.InferenceSession,
  inputs: Record<string, HostTensor>,
  outputNames?: string[],
): Promise<Record<string, HostTensor>> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const [name, t] of Object.entries(inputs)) feeds[name] = toOrt(t);
  const results = outputNames ? await session.run(feeds, outputNames) : await session.run(feeds);
  const out: Record<string, HostTensor> = {};
  for (const [name, t] of Object.entries(results)) out[name] = fromOrt(t);
  return out;
}
