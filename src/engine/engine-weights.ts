import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import type { GraphBuilder } from '../onnx/builder.ts';
import { serializeModel } from '../onnx/builder.ts';
import type { Weights } from '../model/tensor.ts';
import { collectGarbage } from './engine-host.ts';

const { onnx } = onnxProto;

/**
 * Engine graphs with their weights left in the model's safetensors files: the ONNX model then holds
 * external-data references (file, offset, length) and onnxruntime reads the tensors itself, so the
 * weights never sit in memory three times at once (host tensors, serialized model, onnxruntime's copy)
 * while a session is created. Only float32 tensors stored as float32, used only as matmul weights
 * (prepacked by onnxruntime), are referenced; the rest stay inline in the model.
 */

export interface ExternalModel {
  bytes: Uint8Array;
  /** Session config entries onnxruntime needs to find the files (a model loaded from bytes has no folder). */
  configEntries: Record<string, string>;
  /** Names of the tensors left in the files. */
  external: string[];
}

interface Span {
  file: string;
  dtype: string;
  offset: number;
  length: number;
}

/** Byte spans of the tensors of a model directory's safetensors file(s), from the headers alone; null if none can be read. */
export function safetensorsSpans(dir: string): Map<string, Span> | null {
  const files: string[] = [];
  if (existsSync(join(dir, 'model.safetensors'))) files.push('model.safetensors');
  else if (existsSync(join(dir, 'model.safetensors.index.json'))) {
    const index = JSON.parse(readFileSync(join(dir, 'model.safetensors.index.json'), 'utf8')) as { weight_map: Record<string, string> };
    files.push(...new Set(Object.values(index.weight_map)));
  } else return null;
  const spans = new Map<string, Span>();
  for (const file of files) {
    const fd = openSync(join(dir, file), 'r');
    try {
      const lengthField = Buffer.alloc(8);
      readSync(fd, lengthField, 0, 8, 0);
      const headerLength = Number(lengthField.readBigUInt64LE(0));
      const header = Buffer.alloc(headerLength);
      readSync(fd, header, 0, headerLength, 8);
      const entries = JSON.parse(header.toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
      for (const [name, e] of Object.entries(entries)) {
        if (name === '__metadata__') continue;
        spans.set(name, { file, dtype: e.dtype, offset: 8 + headerLength + e.data_offsets[0], length: e.data_offsets[1] - e.data_offsets[0] });
      }
    } finally {
      closeSync(fd);
    }
  }
  return spans;
}

/** Whether the file holds these bytes at the span (checked on a few samples: a cheap guard against a wrong directory or weights changed in memory). */
function sameBytes(dir: string, span: Span, data: Uint8Array): boolean {
  const fd = openSync(join(dir, span.file), 'r');
  try {
    const n = Math.min(64, data.byteLength);
    const got = Buffer.alloc(n);
    for (const at of [0, (data.byteLength - n) >> 1, data.byteLength - n]) {
      readSync(fd, got, 0, n, span.offset + at);
      if (!got.equals(data.subarray(at, at + n))) return false;
    }
    return true;
  } finally {
    closeSync(fd);
  }
}

/**
 * Initializers used only as the B input of Gemm/MatMul: onnxruntime prepacks those into its own
 * buffers and lets go of the file. Others (e.g. a tied embedding, also read by Gather) would stay
 * mapped from the file for the session's life, and a file rewritten in place under a mapping can
 * crash the process (SIGBUS), so they stay inline.
 */
function prepackedOnly(graph: GraphBuilder): Set<string> {
  const ok = new Set(graph.initializers.keys());
  for (const node of graph.nodes) {
    node.inputs.forEach((input, i) => {
      if (ok.has(input) && !((node.opType === 'Gemm' || node.opType === 'MatMul') && i === 1)) ok.delete(input);
    });
  }
  return ok;
}

/**
 * Serializes `graph` with each initializer that is a model weight as stored in `dir` (the same tensor
 * object as in `weights`, float32 in the file, the file's bytes on a sampled check) replaced by a
 * reference into the file. The initializers are removed from `graph`.
 */
export function serializeWithExternalWeights(graph: GraphBuilder, weights: Weights, dir: string): ExternalModel {
  const spans = safetensorsSpans(dir);
  const refs: Array<InstanceType<typeof onnx.TensorProto>> = [];
  const packed = prepackedOnly(graph);
  for (const [name, t] of [...graph.initializers]) {
    const span = spans?.get(name);
    if (!packed.has(name)) continue;
    if (!span || span.dtype !== 'F32' || t.dtype !== 'float32' || weights.get(name) !== t || span.length !== t.data.byteLength) continue;
    if (!sameBytes(dir, span, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))) continue;
    refs.push(
      onnx.TensorProto.create({
        name,
        dims: t.shape,
        dataType: onnx.TensorProto.DataType.FLOAT,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: span.file },
          { key: 'offset', value: String(span.offset) },
          { key: 'length', value: String(span.length) },
        ],
      }),
    );
    graph.initializers.delete(name);
  }
  const model = onnx.ModelProto.decode(serializeModel(graph));
  model.graph!.initializer!.push(...refs);
  return {
    bytes: onnx.ModelProto.encode(model).finish(),
    configEntries: refs.length > 0 ? { 'session.model_external_initializers_file_folder_path': dir } : {},
    external: refs.map((r) => r.name),
  };
}

/**
 * The serialized model of an engine graph, ready for createSession: weights left in `weightsDir`'s
 * files where possible (see serializeWithExternalWeights). With `releaseWeights`, the host weights
 * are dropped and their memory handed back before returning, so that onnxruntime's copy does not
 * come on top of them.
 */
export async function engineModel(build: () => GraphBuilder, weights: Weights, opts: { weightsDir?: string; releaseWeights?: boolean }): Promise<Omit<ExternalModel, 'external'>> {
  const model = serialize(build, weights, opts.weightsDir); // the graph (and its views of the weights) is garbage from here
  if (opts.releaseWeights) {
    weights.clear();
    await settleMemory();
  }
  return model;
}

function serialize(build: () => GraphBuilder, weights: Weights, weightsDir: string | undefined): Omit<ExternalModel, 'external'> {
  const graph = build();
  if (weightsDir === undefined) return { bytes: serializeModel(graph), configEntries: {} };
  const { bytes, configEntries } = serializeWithExternalWeights(graph, weights, weightsDir);
  return { bytes, configEntries };
}

/**
 * A full GC, then a wait (≤ 1 s) until the resident size stops falling: V8 frees large array
 * buffers on a background thread after the collection, tens of milliseconds later.
 */
export async function settleMemory(): Promise<void> {
  collectGarbage();
  let last = process.memoryUsage.rss();
  for (let waited = 0, steady = 0; waited < 1000 && steady < 3; waited += 10) {
    await new Promise((r) => setTimeout(r, 10));
    const now = process.memoryUsage.rss();
    steady = now > last - (1 << 20) ? steady + 1 : 0;
    last = now;
  }
}
