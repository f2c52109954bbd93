/**
 * The GGUF container (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md), little-endian:
 *   magic "GGUF", u32 version (2 or 3), u64 tensor_count, u64 kv_count,
 *   kv_count × (string key, u32 value type, value), tensor_count × (string name, u32 n_dims,
 *   n_dims × u64 ne (fastest dimension first), u32 ggml type, u64 offset into the data section),
 *   padding to `general.alignment` (default 32), then the tensor data, each tensor aligned.
 * Strings are u64 length + UTF-8 bytes; arrays are u32 element type + u64 count + elements.
 */
export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

export enum ValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type MetadataValue = number | bigint | boolean | string | MetadataValue[];
export type Metadata = Map<string, MetadataValue>;

/** ggml tensor types this project reads (and, for some, writes): block size in elements, bytes per block. */
export interface GgmlTypeInfo {
  name: string;
  blockSize: number;
  blockBytes: number;
}

export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map([
  [0, { name: 'F32', blockSize: 1, blockBytes: 4 }],
  [1, { name: 'F16', blockSize: 1, blockBytes: 2 }],
  [2, { name: 'Q4_0', blockSize: 32, blockBytes: 2 + 16 }],
  [3, { name: 'Q4_1', blockSize: 32, blockBytes: 2 + 2 + 16 }],
  [8, { name: 'Q8_0', blockSize: 32, blockBytes: 2 + 32 }],
  [12, { name: 'Q4_K', blockSize: 256, blockBytes: 2 + 2 + 12 + 128 }],
  [13, { name: 'Q5_K', blockSize: 256, blockBytes: 2 + 2 + 12 + 32 + 128 }],
  [14, { name: 'Q6_K', blockSize: 256, blockBytes: 128 + 64 + 16 + 2 }],
  [30, { name: 'BF16', blockSize: 1, blockBytes: 2 }],
]);

export const GGML_TYPE_BY_NAME: ReadonlyMap<string, number> = new Map([...GGML_TYPES].map(([id, t]) => [t.name, id]));

/** Names of the ggml types we do not read, for error messages. */
const OTHER_GGML_TYPES: Record<number, string> = {
  6: 'Q5_0', 7: 'Q5_1', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS',
  19: 'IQ1_S', 20: 'IQ4_NL', 21: 'IQ3_S', 22: 'IQ2_S', 23: 'IQ4_XS', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64',
  28: 'F64', 29: 'IQ1_M', 34: 'TQ1_0', 35: 'TQ2_0', 39: 'MXFP4',
};

export function ggmlTypeName(type: number): string {
  return GGML_TYPES.get(type)?.name ?? OTHER_GGML_TYPES[type] ?? `type ${type}`;
}

/** Bytes of a tensor of `type` with dims `ne` (fastest first); throws if ne[0] is not a whole number of blocks. */
export function tensorByteSize(type: number, ne: readonly number[], name: string): number {
  const info = GGML_TYPES.get(type);
  if (!info) throw new Error(`tensor "${name}": unsupported ggml type ${ggmlTypeName(type)} (supported: ${[...GGML_TYPES.values()].map((t) => t.name).join(', ')})`);
  const rowLen = ne[0] ?? 1;
  if (rowLen % info.blockSize !== 0) throw new Error(`tensor "${name}": row length ${rowLen} is not a multiple of the ${info.name} block size ${info.blockSize}`);
  let rows = 1;
  for (let i = 1; i < ne.length; i++) rows *= ne[i];
  return (rowLen / info.blockSize) * info.blockBytes * rows;
}

export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Weight types `dice model export` writes. */
export const EXPORT_TYPES = ['f32', 'f16', 'q8_0', 'q4_0'] as const;
export type ExportType = (typeof EXPORT_TYPES)[number];
