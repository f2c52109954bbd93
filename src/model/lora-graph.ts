import type { GraphBuilder } from '../onnx/builder.ts';
import type { LlamaConfig } from './llama-config.ts';
import { initializerWeights, type FloatDType, type LinearAdapter } from './llama-graph.ts';
import type { Weights } from './tensor.ts';
import { adaptedLinears, loraScale, type LoraConfig } from './lora.ts';

/**
 * The LoRA term of the adapted Linears as a `LinearAdapter` hook for emitLlamaForward /
 * emitLlamaDecodeStep: y + (alpha / r)·(x·Aᵀ)·Bᵀ. With 'gemm' (x [N,in]) that is two Gemms, the
 * second adding y as its C input with the scale as its alpha — no separate Mul/Add nodes, and the
 * autodiff's Gemm rule gives dA, dB and dx. `tensor(name, shape)` supplies the graph value of an
 * adapter tensor (a graph input when training, an initializer for inference); it is called once
 * per name, when the first layer that needs it is emitted.
 */
export function loraLinearAdapter(
  g: GraphBuilder,
  model: LlamaConfig,
  lora: LoraConfig,
  emit: { linear: 'gemm' | 'matmul'; dtype: FloatDType },
  tensor: (name: string, shape: number[]) => string,
): LinearAdapter {
  const byWeight = new Map(adaptedLinears(model, lora).map((l) => [l.weight, l]));
  const scale = loraScale(lora);
  return (weight, x, y) => {
    const l = byWeight.get(weight);
    if (!l) return y;
    const a = tensor(l.a, [lora.r, l.inFeatures]);
    const b = tensor(l.b, [l.outFeatures, lora.r]);
    if (emit.linear === 'gemm') {
      const down = g.op1('Gemm', [x, a], { transB: 1 });
      return g.op1('Gemm', [down, b, y], { transB: 1, alpha: { float: scale } });
    }
    const down = g.op1('MatMul', [x, g.op1('Transpose', [a], { perm: [1, 0] })]);
    const up = g.op1('MatMul', [down, g.op1('Transpose', [b], { perm: [1, 0] })]);
    return g.op1('Add', [y, g.op1('Mul', [up, g.scalar(scale, emit.dtype)])]);
  };
}

/** For the inference builders (BuildOptions.adapter): the adapter's tensors as initializers of the graph. */
export function loraInitializers(model: LlamaConfig, adapter: { lora: LoraConfig; weights: Weights }, dtype: FloatDType = 'float32'): (g: GraphBuilder) => LinearAdapter {
  return (g) => loraLinearAdapter(g, model, adapter.lora, { linear: 'gemm', dtype }, initializerWeights(g, adapter.weights, dtype));
}
