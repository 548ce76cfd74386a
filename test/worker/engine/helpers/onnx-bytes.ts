/**
 * Hand-built ONNX models for error-path tests (bf16 I/O, wrong input names), so the tests need no
 * Python export. Only the few protobuf fields onnxruntime requires are written.
 */

export const ONNX_ELEMENT_TYPE = { float: 1, uint8: 2, int32: 6, int64: 7, float16: 10, bfloat16: 16 } as const;
export type OnnxElementTypeName = keyof typeof ONNX_ELEMENT_TYPE;

function varint(value: number | bigint): number[] {
  let v = BigInt(value);
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

function field(number: number, wireType: 0 | 2, payload: number[] | number): number[] {
  const key = varint((number << 3) | wireType);
  if (wireType === 0) return [...key, ...varint(payload as number)];
  const bytes = payload as number[];
  return [...key, ...varint(bytes.length), ...bytes];
}

const text = (value: string): number[] => [...Buffer.from(value, 'utf8')];

export interface SyntheticValue {
  name: string;
  type: OnnxElementTypeName;
  /** Numbers are fixed sizes, strings are symbolic dimensions. */
  shape: Array<number | string>;
}

function valueInfo(value: SyntheticValue): number[] {
  const dims = value.shape.flatMap((dim) => field(1, 2, typeof dim === 'number' ? field(1, 0, dim) : field(2, 2, text(dim))));
  const tensorType = [...field(1, 0, ONNX_ELEMENT_TYPE[value.type]), ...field(2, 2, dims)];
  return [...field(1, 2, text(value.name)), ...field(2, 2, field(1, 2, tensorType))];
}

export interface SyntheticNode {
  op: string;
  inputs: string[];
  outputs: string[];
  /** Integer attributes (e.g. Cast's `to`). */
  intAttributes?: Record<string, number>;
}

export interface SyntheticInitializer {
  name: string;
  dims: number[];
  /** Values stored in the model (int64). */
  int64Values?: number[];
  /** Or float32 weights stored in an external file next to the model (nothing is written there). */
  external?: { location: string; offset?: number };
}

function nodeProto(node: SyntheticNode, index: number): number[] {
  const attributes = Object.entries(node.intAttributes ?? {}).flatMap(([name, value]) =>
    // AttributeProto: name=1, i=3, type=20 (INT = 2)
    field(5, 2, [...field(1, 2, text(name)), ...field(3, 0, value), ...field(20, 0, 2)]),
  );
  return field(1, 2, [
    ...node.inputs.flatMap((input) => field(1, 2, text(input))),
    ...node.outputs.flatMap((output) => field(2, 2, text(output))),
    ...field(3, 2, text(`${node.op.toLowerCase()}_${index}`)),
    ...field(4, 2, text(node.op)),
    ...attributes,
  ]);
}

function initializerProto(initializer: SyntheticInitializer): number[] {
  if (initializer.external) {
    // TensorProto: dims=1, data_type=2 (FLOAT = 1), name=8, external_data=13 (key=1, value=2), data_location=14 (EXTERNAL = 1)
    const length = initializer.dims.reduce((a, b) => a * b, 1) * 4;
    const entry = (key: string, value: string) => field(13, 2, [...field(1, 2, text(key)), ...field(2, 2, text(value))]);
    return field(5, 2, [
      ...initializer.dims.flatMap((dim) => field(1, 0, dim)),
      ...field(2, 0, ONNX_ELEMENT_TYPE.float),
      ...field(8, 2, text(initializer.name)),
      ...entry('location', initializer.external.location),
      ...entry('offset', String(initializer.external.offset ?? 0)),
      ...entry('length', String(length)),
      ...field(14, 0, 1),
    ]);
  }
  // TensorProto: dims=1, data_type=2 (INT64 = 7), int64_data=7, name=8
  return field(5, 2, [
    ...initializer.dims.flatMap((dim) => field(1, 0, dim)),
    ...field(2, 0, ONNX_ELEMENT_TYPE.int64),
    ...field(
      7,
      2,
      (initializer.int64Values ?? []).flatMap((value) => varint(value)),
    ),
    ...field(8, 2, text(initializer.name)),
  ]);
}

/** A model from explicit nodes (opset 17). Graph inputs that no node reads are allowed. */
export function graphModel(
  inputs: SyntheticValue[],
  outputs: SyntheticValue[],
  nodes: SyntheticNode[],
  initializers: SyntheticInitializer[] = [],
): Uint8Array {
  const graph = [
    ...nodes.flatMap((node, index) => nodeProto(node, index)),
    ...field(2, 2, text('synthetic')),
    ...initializers.flatMap(initializerProto),
    ...inputs.flatMap((input) => field(11, 2, valueInfo(input))),
    ...outputs.flatMap((output) => field(12, 2, valueInfo(output))),
  ];
  return Uint8Array.from([
    ...field(1, 0, 8),
    ...field(2, 2, text('t2i-stream-test')),
    ...field(7, 2, graph),
    ...field(8, 2, [...field(1, 2, []), ...field(2, 0, 17)]),
  ]);
}

/**
 * A model whose outputs are Identity copies of its inputs (output i = input i), so any input/output
 * names and element types can be declared.
 */
export function identityModel(inputs: SyntheticValue[], outputs: SyntheticValue[]): Uint8Array {
  const nodes = outputs.flatMap((output, index) => {
    const input = inputs[index] ?? inputs[0]!;
    const node = [
      ...field(1, 2, text(input.name)),
      ...field(2, 2, text(output.name)),
      ...field(3, 2, text(`identity_${index}`)),
      ...field(4, 2, text('Identity')),
    ];
    return field(1, 2, node);
  });
  const graph = [
    ...nodes,
    ...field(2, 2, text('synthetic')),
    ...inputs.flatMap((input) => field(11, 2, valueInfo(input))),
    ...outputs.flatMap((output) => field(12, 2, valueInfo(output))),
  ];
  const model = [
    ...field(1, 0, 8),
    ...field(2, 2, text('t2i-stream-test')),
    ...field(7, 2, graph),
    ...field(8, 2, [...field(1, 2, []), ...field(2, 0, 17)]),
  ];
  return Uint8Array.from(model);
}
