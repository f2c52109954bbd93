import onnxProto from 'onnx-proto';
import type { DType, HostTensor } from '../model/tensor.ts';

const { onnx } = onnxProto;

/**
 * A small typed builder for ONNX graphs. Values are named by strings; every op call returns the
 * names of its outputs. The graph is plain data (nodes, inputs, outputs, initializers) so that the
 * autodiff pass can walk it and append gradient nodes with the same builder.
 *
 * Attribute values: an integer number → INT, a non-integer number → FLOAT, `{ float: x }` forces
 * FLOAT for integral values (e.g. `alpha: { float: 1 }`), number[] → INTS (all integers) or FLOATS,
 * `{ floats: [...] }` forces FLOATS, string → STRING, HostTensor → TENSOR.
 */

export type AttributeValue = number | { float: number } | number[] | { floats: number[] } | string | HostTensor;
export type Attributes = Record<string, AttributeValue>;

export interface GraphNode {
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Attributes;
  name: string;
}

/** A graph input/output: dtype and shape, where a string dimension is symbolic (e.g. 'batch'). */
export interface ValueInfo {
  name: string;
  dtype: DType;
  shape: Array<number | string>;
}

export interface OpOptions {
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Explicit output names (otherwise generated). */
  names?: string[];
  domain?: string;
}

export const DEFAULT_OPSET = 18;
/** Contrib ops of onnxruntime (e.g. fused attention kernels). */
export const MS_DOMAIN = 'com.microsoft';

export class GraphBuilder {
  readonly nodes: GraphNode[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  readonly initializers = new Map<string, HostTensor>();
  /** dtypes known for values (inputs, initializers, and op outputs where the caller declared them). */
  readonly dtypes = new Map<string, DType>();
  private counter = 0;
  private readonly usedNames = new Set<string>();

  constructor(readonly name = 'graph') {}

  /** A fresh value name with a readable prefix. */
  fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`;
    while (this.usedNames.has(name));
    this.usedNames.add(name);
    return name;
  }

  private claim(name: string): string {
    if (this.usedNames.has(name)) throw new Error(`graph ${this.name}: value name '${name}' is already used`);
    this.usedNames.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: Array<number | string>): string {
    this.inputs.push({ name: this.claim(name), dtype, shape });
    this.dtypes.set(name, dtype);
    return name;
  }

  /** Declares `value` as a graph output, renaming it with an Identity when a different name is asked for. */
  output(value: string, dtype: DType, shape: Array<number | string>, name = value): string {
    const outName = name === value ? value : this.op('Identity', [value], {}, { names: [name] })[0];
    this.outputs.push({ name: outName, dtype, shape });
    this.dtypes.set(outName, dtype);
    return outName;
  }

  initializer(name: string, tensor: HostTensor): string {
    this.initializers.set(this.claim(name), tensor);
    this.dtypes.set(name, tensor.dtype);
    return name;
  }

  /** Appends a node; returns its output names. */
  op(opType: string, inputs: string[], attributes: Attributes = {}, options: OpOptions = {}): string[] {
    const count = options.names?.length ?? options.outputs ?? 1;
    const outputs = options.names
      ? options.names.map((n) => (n === '' ? '' : this.claim(n)))
      : Array.from({ length: count }, () => this.fresh(opType));
    this.nodes.push({
      opType,
      domain: options.domain ?? '',
      inputs,
      outputs,
      attributes,
      name: `${opType}_${this.nodes.length}`,
    });
    return outputs;
  }

  /** Single-output op. */
  op1(opType: string, inputs: string[], attributes: Attributes = {}, domain?: string): string {
    return this.op(opType, inputs, attributes, { domain })[0];
  }

  /** A constant as an initializer (deduplicated by content for small tensors). */
  constant(tensor: HostTensor, prefix = 'const'): string {
    const key = tensor.data.length <= 64 ? `${tensor.dtype}|${tensor.shape.join(',')}|${Array.from(tensor.data as ArrayLike<number | bigint>).join(',')}` : null;
    if (key !== null) {
      const hit = this.constCache.get(key);
      if (hit) return hit;
    }
    const name = this.fresh(prefix);
    this.initializers.set(name, tensor);
    this.dtypes.set(name, tensor.dtype);
    if (key !== null) this.constCache.set(key, name);
    return name;
  }
  private readonly constCache = new Map<string, string>();

  /** int64 constant (1-D unless a shape is given); the usual type of shapes, axes and indices. */
  int64(values: number[], shape: number[] = [values.length]): string {
    return this.constant({ dtype: 'int64', shape, data: BigInt64Array.from(values.map((v) => BigInt(v))) }, 'i64');
  }

  /** Scalar (or shaped) float constant of the given float dtype. */
  scalar(value: number, dtype: DType = 'float32', shape: number[] = []): string {
    const data = dtype === 'float64' ? Float64Array.of(value) : Float32Array.of(value);
    if (dtype !== 'float32' && dtype !== 'float64') throw new Error(`scalar: unsupported dtype ${dtype}`);
    return this.constant({ dtype, shape, data }, 'c');
  }
}

const DTYPE_TO_ONNX: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  float64: onnx.TensorProto.DataType.DOUBLE,
  float16: onnx.TensorProto.DataType.FLOAT16,
  bfloat16: onnx.TensorProto.DataType.BFLOAT16,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  int8: onnx.TensorProto.DataType.INT8,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
};

export function onnxDataType(dtype: DType): number {
  return DTYPE_TO_ONNX[dtype];
}

function tensorProto(name: string, tensor: HostTensor): InstanceType<typeof onnx.TensorProto> {
  const bytes = new Uint8Array(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength);
  return onnx.TensorProto.create({
    name,
    dims: tensor.shape,
    dataType: DTYPE_TO_ONNX[tensor.dtype],
    rawData: bytes,
  });
}

function attributeProto(name: string, value: AttributeValue): InstanceType<typeof onnx.AttributeProto> {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'string') return onnx.AttributeProto.create({ name, type: T.STRING, s: new TextEncoder().encode(value) });
  if (typeof value === 'number') {
    return Number.isInteger(value)
      ? onnx.AttributeProto.create({ name, type: T.INT, i: value })
      : onnx.AttributeProto.create({ name, type: T.FLOAT, f: value });
  }
  if (Array.isArray(value)) {
    return value.every(Number.isInteger)
      ? onnx.AttributeProto.create({ name, type: T.INTS, ints: value })
      : onnx.AttributeProto.create({ name, type: T.FLOATS, floats: value });
  }
  if ('float' in value) return onnx.AttributeProto.create({ name, type: T.FLOAT, f: value.float });
  if ('floats' in value) return onnx.AttributeProto.create({ name, type: T.FLOATS, floats: value.floats });
  return onnx.AttributeProto.create({ name, type: T.TENSOR, t: tensorProto('', value) });
}

function valueInfoProto(info: ValueInfo): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name: info.name,
    type: {
      tensorType: {
        elemType: DTYPE_TO_ONNX[info.dtype],
        shape: { dim: info.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

export interface SerializeOptions {
  opset?: number;
  /** Also import the com.microsoft contrib domain (version 1). */
  contribOps?: boolean;
}

/** Serializes the graph to an ONNX ModelProto (bytes for `InferenceSession.create`). */
export function serializeModel(graph: GraphBuilder, options: SerializeOptions = {}): Uint8Array {
  const opset = options.opset ?? DEFAULT_OPSET;
  const usesContrib = options.contribOps ?? graph.nodes.some((n) => n.domain === MS_DOMAIN);
  const model = onnx.ModelProto.create({
    // IR 8 pairs with opsets up to 18; newer opsets need newer IR versions.
    irVersion: opset <= 18 ? 8 : opset <= 20 ? 9 : 10,
    producerName: 'dice-stream',
    opsetImport: [{ domain: '', version: opset }, ...(usesContrib ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
    graph: {
      name: graph.name,
      node: graph.nodes.map((n) =>
        onnx.NodeProto.create({
          opType: n.opType,
          domain: n.domain,
          name: n.name,
          input: n.inputs,
          output: n.outputs,
          attribute: Object.entries(n.attributes).map(([k, v]) => attributeProto(k, v)),
        }),
      ),
      input: graph.inputs.map(valueInfoProto),
      output: graph.outputs.map(valueInfoProto),
      initializer: [...graph.initializers].map(([name, t]) => tensorProto(name, t)),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}
