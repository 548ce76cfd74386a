/**
 * Reads what the engine needs to know about an .onnx file without creating an onnxruntime session:
 * graph inputs and outputs (names, element types, shapes), the operators it uses, the weights stored in
 * the file and the external weight files it points to. Large embedded weights are skipped, not read.
 */
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { TensorSpec } from './onnx-session.ts';
import { FileSource, fields, stringOf, varintsOf, WIRE, type ByteSource } from './protobuf.ts';

/** onnx.TensorProto.DataType -> the names onnxruntime-node reports in session metadata. */
const ELEMENT_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};
const ELEMENT_BITS: Record<string, number> = {
  float32: 32,
  uint8: 8,
  int8: 8,
  uint16: 16,
  int16: 16,
  int32: 32,
  int64: 64,
  bool: 8,
  float16: 16,
  float64: 64,
  uint32: 32,
  uint64: 64,
  bfloat16: 16,
  float8e4m3fn: 8,
  float8e4m3fnuz: 8,
  float8e5m2: 8,
  float8e5m2fnuz: 8,
  uint4: 4,
  int4: 4,
  float4e2m1: 4,
};

export interface ExternalData {
  /** Path as written in the model, relative to the .onnx file's folder. */
  location: string;
  /** Bytes the model needs from that file (offset + length of the furthest tensor). */
  requiredBytes: number;
  /** Size on disk, or undefined when the file is missing. */
  sizeOnDisk: number | undefined;
}

export interface OnnxHeader {
  file: string;
  fileBytes: number;
  irVersion: number;
  /** Opset per domain ('' = the default ai.onnx domain). */
  opsets: Record<string, number>;
  producer: string;
  inputs: Map<string, TensorSpec>;
  outputs: Map<string, TensorSpec>;
  /** Operators used, as `domain:OpType` ('' domain written as `ai.onnx`). */
  operators: Set<string>;
  /** Element types of the weights (initializers), with their total bytes. */
  weightTypes: Record<string, number>;
  /** Bytes of weights stored inside the .onnx file itself. */
  embeddedWeightBytes: number;
  external: ExternalData[];
}

function readDimension(source: ByteSource, start: number, end: number): number | string {
  for (const f of fields(source, start, end)) {
    if (f.number === 1 && f.wireType === WIRE.VARINT) return f.value;
    if (f.number === 2 && f.wireType === WIRE.LEN) return stringOf(source, f);
  }
  return '?';
}

function readValueInfo(source: ByteSource, start: number, end: number): TensorSpec | undefined {
  let name = '';
  let type = 'unknown';
  const shape: (number | string)[] = [];
  for (const f of fields(source, start, end)) {
    if (f.number === 1) name = stringOf(source, f);
    if (f.number !== 2) continue;
    for (const t of fields(source, f.start, f.end)) {
      if (t.number !== 1) {
        type = 'non-tensor';
        continue;
      }
      for (const tensor of fields(source, t.start, t.end)) {
        if (tensor.number === 1) type = ELEMENT_TYPES[tensor.value] ?? `type ${tensor.value}`;
        if (tensor.number === 2) {
          for (const dim of fields(source, tensor.start, tensor.end)) {
            if (dim.number === 1) shape.push(readDimension(source, dim.start, dim.end));
          }
        }
      }
    }
  }
  return name === '' ? undefined : { name, type, shape };
}

interface Initializer {
  name: string;
  type: string;
  bytes: number;
  external?: { location: string; offset: number; length: number | undefined };
}

function readInitializer(source: ByteSource, start: number, end: number): Initializer {
  let name = '';
  let type = 'unknown';
  let elements = 1;
  let rawBytes = 0;
  let typedBytes = 0;
  let externalLocation: string | undefined;
  let offset = 0;
  let length: number | undefined;
  for (const f of fields(source, start, end)) {
    switch (f.number) {
      case 1:
        for (const d of varintsOf(source, f)) elements *= d;
        break;
      case 2:
        type = ELEMENT_TYPES[f.value] ?? `type ${f.value}`;
        break;
      case 8:
        name = stringOf(source, f);
        break;
      case 9:
        rawBytes = f.end - f.start;
        break;
      case 4: // float_data
      case 5: // int32_data
      case 7: // int64_data
      case 10: // double_data
      case 11: // uint64_data
        typedBytes += f.end - f.start;
        break;
      case 13: {
        let key = '';
        let value = '';
        for (const kv of fields(source, f.start, f.end)) {
          if (kv.number === 1) key = stringOf(source, kv);
          if (kv.number === 2) value = stringOf(source, kv);
        }
        if (key === 'location') externalLocation = value;
        if (key === 'offset') offset = Number(value);
        if (key === 'length') length = Number(value);
        break;
      }
    }
  }
  const bytes = Math.ceil((elements * (ELEMENT_BITS[type] ?? 32)) / 8);
  const initializer: Initializer = { name, type, bytes: rawBytes || typedBytes || bytes };
  if (externalLocation !== undefined) initializer.external = { location: externalLocation, offset, length: length ?? bytes };
  return initializer;
}

/** Reads the header of one .onnx file. Throws on a file that is not an ONNX model. */
export function readOnnxHeader(file: string): OnnxHeader {
  const source = new FileSource(file);
  try {
    const header: OnnxHeader = {
      file,
      fileBytes: source.size,
      irVersion: 0,
      opsets: {},
      producer: '',
      inputs: new Map(),
      outputs: new Map(),
      operators: new Set(),
      weightTypes: {},
      embeddedWeightBytes: 0,
      external: [],
    };
    let graph: { start: number; end: number } | undefined;
    for (const f of fields(source)) {
      if (f.number === 1 && f.wireType === WIRE.VARINT) header.irVersion = f.value;
      else if (f.number === 2 && f.wireType === WIRE.LEN) header.producer = stringOf(source, f);
      else if (f.number === 7 && f.wireType === WIRE.LEN) graph = { start: f.start, end: f.end };
      else if (f.number === 8 && f.wireType === WIRE.LEN) {
        let domain = '';
        let version = 0;
        for (const o of fields(source, f.start, f.end)) {
          if (o.number === 1) domain = stringOf(source, o);
          if (o.number === 2) version = o.value;
        }
        header.opsets[domain] = version;
      }
    }
    if (!graph || header.irVersion === 0) throw new Error('no ONNX graph in the file (is it an .onnx model?)');
    const initializers = new Set<string>();
    const external = new Map<string, number>();
    for (const f of fields(source, graph.start, graph.end)) {
      if (f.wireType !== WIRE.LEN) continue;
      if (f.number === 1) {
        let op = '';
        let domain = '';
        for (const n of fields(source, f.start, f.end)) {
          if (n.number === 4) op = stringOf(source, n);
          if (n.number === 7) domain = stringOf(source, n);
        }
        header.operators.add(`${domain === '' ? 'ai.onnx' : domain}:${op}`);
      } else if (f.number === 5) {
        const init = readInitializer(source, f.start, f.end);
        initializers.add(init.name);
        header.weightTypes[init.type] = (header.weightTypes[init.type] ?? 0) + init.bytes;
        if (init.external) {
          const need = init.external.offset + (init.external.length ?? 0);
          external.set(init.external.location, Math.max(external.get(init.external.location) ?? 0, need));
        } else header.embeddedWeightBytes += init.bytes;
      } else if (f.number === 11 || f.number === 12) {
        const spec = readValueInfo(source, f.start, f.end);
        if (spec) (f.number === 11 ? header.inputs : header.outputs).set(spec.name, spec);
      }
    }
    // IR < 4 lists initializers among the graph inputs: those are weights, not inputs to feed.
    for (const name of initializers) header.inputs.delete(name);
    for (const [location, requiredBytes] of external) {
      const path = join(dirname(file), location);
      header.external.push({ location, requiredBytes, sizeOnDisk: existsSync(path) ? statSync(path).size : undefined });
    }
    return header;
  } finally {
    source.close();
  }
}

/** Bytes of weights on disk: in the file and in its external files. */
export function weightBytes(header: OnnxHeader): number {
  return header.embeddedWeightBytes + header.external.reduce((sum, e) => sum + (e.sizeOnDisk ?? e.requiredBytes), 0);
}
