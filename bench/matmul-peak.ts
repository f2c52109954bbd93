/** The machine's fp32 MatMul peak as the benches quote it: a 2048² MatMul in onnxruntime, best of 3 after a warm-up. */
import * as ort from 'onnxruntime-node';
import { GraphBuilder, serializeModel } from '../src/onnx/builder.ts';
import { createSession } from '../src/onnx/session.ts';

export async function matmulPeakGflops(threads: number, n = 2048): Promise<number> {
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
