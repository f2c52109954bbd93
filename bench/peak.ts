import * as ort from 'onnxruntime-node';
import { llamaParameterShapes } from '../src/model/llama-graph.ts';
import type { LlamaConfig } from '../src/model/llama-config.ts';
import { GraphBuilder, serializeModel } from '../src/onnx/builder.ts';
import { createSession } from '../src/onnx/session.ts';

/** The machine's fp32 reference for benchmarks: GFLOP/s of a 2048² MatMul on onnxruntime (best of 3 after a warm-up). */
export async function matmulPeakGflops(threads: number): Promise<number> {
  const n = 2048;
  const g = new GraphBuilder('peak');
  const a = g.input('a', 'float32', [n, n]);
  const b = g.input('b', 'float32', [n, n]);
  g.output(g.op1('MatMul', [a, b]), 'float32', [n, n], 'c');
  const s = await createSession(serializeModel(g), { threads });
  const data = new Float32Array(n * n).map((_, i) => ((i * 7919) % 1000) / 1000);
  const feeds = { a: new ort.Tensor('float32', data, [n, n]), b: new ort.Tensor('float32', data, [n, n]) };
  await s.run(feeds);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await s.run(feeds);
    best = Math.min(best, (performance.now() - t) / 1000);
  }
  await s.release();
  return (2 * n ** 3) / best / 1e9;
}

/** Weights used in matmuls per token (the lm_head included, tied or not; the embedding lookup not). */
export function matmulParams(config: LlamaConfig): number {
  let n = config.vocabSize * config.hiddenSize;
  for (const [name, shape] of llamaParameterShapes(config)) if (shape.length === 2 && name !== 'model.embed_tokens.weight') n += shape[0] * shape[1];
  return n;
}

/** Forward FLOPs of one token attending over `context` positions: 2 per matmul weight, 4·hd per head and position in attention. */
export function forwardFlopsPerToken(config: LlamaConfig, context: number): number {
  return 2 * matmulParams(config) + 4 * config.numLayers * config.numHeads * config.headDim * context;
}
