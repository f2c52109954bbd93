/** A dense host tensor, row-major. Weights use Hugging Face tensor names (e.g. `model.layers.0.self_attn.q_proj.weight`). */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'int8' | 'uint8' | 'bool';

export type TypedArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Int8Array | Uint8Array;

export interface HostTensor {
  dtype: DType;
  shape: number[];
  /** float16/bfloat16 are carried as raw Uint16Array bits. */
  data: TypedArray;
}

export type Weights = Map<string, HostTensor>;

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
