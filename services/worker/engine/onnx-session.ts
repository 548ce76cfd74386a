/**
 * One onnxruntime session per model file, created once by path (external weight files next to
 * model.onnx are found that way) and reused for every batch. Creation failures are sorted into
 * EngineError codes so the worker can tell "wrong machine" from "wrong model".
 */
import { access } from 'node:fs/promises';
import ort from 'onnxruntime-node';
import type { InferenceSession, Tensor } from 'onnxruntime-node';
import { EngineError, looksLikeOutOfMemory, toInferenceError } from './errors.ts';
import { float16BitsToFloat32, float32ToFloat16Bits } from './float16.ts';
import type { EngineLogger, ExecutionProviderName, GraphOptimizationLevel } from './types.ts';

export interface SessionSettings {
  provider: ExecutionProviderName;
  allowCpuFallback: boolean;
  graphOptimizationLevel: GraphOptimizationLevel;
  /** undefined lets onnxruntime pick (one thread per physical core). */
  intraOpNumThreads: number | undefined;
  /** Idle intra-op threads busy-wait (onnxruntime's session.intra_op.allow_spinning). Default false. */
  intraOpSpinning?: boolean;
  /** GPU ordinal for cuda/tensorrt. */
  deviceId: number;
  /** TensorRT: fp16 engines (default true) and the engine cache folder. */
  tensorrtFp16?: boolean;
  tensorrtCacheDirectory?: string | undefined;
  logger: EngineLogger;
}

/** Element types this engine can feed and read. bfloat16 never gets here: onnxruntime-node cannot load it. */
export type TensorElementType = 'float32' | 'float16' | 'int64' | 'int32';

export interface TensorSpec {
  name: string;
  type: string;
  /** Empty when the model does not declare a shape; strings are symbolic dimensions. */
  shape: ReadonlyArray<number | string>;
}

export interface ModelSession {
  readonly file: string;
  readonly provider: ExecutionProviderName;
  readonly inputs: ReadonlyMap<string, TensorSpec>;
  readonly outputs: ReadonlyMap<string, TensorSpec>;
  run(feeds: Record<string, Tensor>, outputNames: readonly string[], stage: string): Promise<Record<string, Tensor>>;
  release(): Promise<void>;
}

const PROVIDER_FAILURE =
  /Failed to load shared library|providers_shared|libcudart|libcublas|libcudnn|libnvinfer|CUDA (driver|failure|error)|no CUDA-capable device|cudaErrorNoDevice|ExecutionProvider|provider .* is not (supported|available)/i;

function providerConfig(settings: SessionSettings): InferenceSession.ExecutionProviderConfig[] {
  switch (settings.provider) {
    case 'cpu':
      return ['cpu'];
    case 'cuda':
      return [{ name: 'cuda', deviceId: settings.deviceId }];
    case 'tensorrt':
      // Nodes TensorRT cannot take run on CUDA: that is TensorRT's normal partitioning, not a fallback to CPU.
      return [
        { name: 'tensorrt', deviceId: settings.deviceId },
        { name: 'cuda', deviceId: settings.deviceId },
      ];
  }
}

/**
 * onnxruntime-node 1.30 passes only `deviceId` to the CUDA and TensorRT providers; the TensorRT provider
 * reads its other settings from these environment variables, which it consults when the provider is
 * created (so they are set just before, in this process).
 */
function applyTensorrtEnvironment(settings: SessionSettings): void {
  if (settings.provider !== 'tensorrt') return;
  process.env.ORT_TENSORRT_FP16_ENABLE = settings.tensorrtFp16 === false ? '0' : '1';
  if (settings.tensorrtCacheDirectory) {
    process.env.ORT_TENSORRT_ENGINE_CACHE_ENABLE = '1';
    process.env.ORT_TENSORRT_CACHE_PATH = settings.tensorrtCacheDirectory;
  }
}

function describeCreateError(file: string, error: unknown): EngineError {
  const message = error instanceof Error ? error.message : String(error);
  if (/Unsupported data type: 16\b/.test(message)) {
    return new EngineError(
      'MODEL_UNSUPPORTED',
      `${file}: the model has bfloat16 inputs or outputs, which onnxruntime-node cannot feed or read; export it with float32 or float16 I/O`,
      { cause: error },
    );
  }
  if (/Unsupported data type/i.test(message)) {
    return new EngineError('MODEL_UNSUPPORTED', `${file}: ${message}`, { cause: error });
  }
  return new EngineError('MODEL_UNSUPPORTED', `${file}: onnxruntime cannot load the model: ${message}`, { cause: error });
}

function specsOf(metadata: readonly InferenceSession.ValueMetadata[], file: string, kind: string): Map<string, TensorSpec> {
  const specs = new Map<string, TensorSpec>();
  for (const value of metadata) {
    if (!value.isTensor) {
      throw new EngineError('MODEL_UNSUPPORTED', `${file}: ${kind} ${value.name} is not a tensor`);
    }
    specs.set(value.name, { name: value.name, type: value.type, shape: value.shape });
  }
  return specs;
}

/** The session options every component gets (the provider comes on top). */
export function baseSessionOptions(settings: SessionSettings): InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: settings.graphOptimizationLevel,
    ...(settings.intraOpNumThreads !== undefined ? { intraOpNumThreads: settings.intraOpNumThreads } : {}),
    // 3 = error: keeps onnxruntime's per-node warnings out of the worker's logs.
    logSeverityLevel: 3,
    extra: { session: { intra_op: { allow_spinning: settings.intraOpSpinning === true ? '1' : '0' } } },
  };
}

export async function openModelSession(file: string, settings: SessionSettings): Promise<ModelSession> {
  try {
    await access(file);
  } catch (error) {
    throw new EngineError('MODEL_NOT_FOUND', `${file}: model file not found`, { cause: error });
  }
  const baseOptions = baseSessionOptions(settings);

  let provider = settings.provider;
  let session: InferenceSession;
  applyTensorrtEnvironment(settings);
  try {
    session = await ort.InferenceSession.create(file, { ...baseOptions, executionProviders: providerConfig(settings) });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // Out of memory first: "CUDA failure 2: out of memory" also matches the provider pattern, and falling
    // back to the CPU would silently reload a 12B model there.
    if (looksLikeOutOfMemory(message)) {
      throw new EngineError(
        'OUT_OF_MEMORY',
        `${file}: out of memory while loading on ${settings.provider} (${message.split('\n')[0]}); use a GPU with more memory, a float16/fp8 export, or fewer workers per GPU (t2i model check estimates the need)`,
        { cause: error, retriable: false },
      );
    }
    if (settings.provider === 'cpu' || !PROVIDER_FAILURE.test(message)) throw describeCreateError(file, error);
    const unavailable = new EngineError(
      'PROVIDER_UNAVAILABLE',
      `${file}: execution provider '${settings.provider}' is unavailable (${message.split('\n')[0]}); install onnxruntime-node with its CUDA 12 libraries (ONNXRUNTIME_NODE_INSTALL=cuda12) on a GPU machine, or set allowCpuFallback`,
      { cause: error },
    );
    if (!settings.allowCpuFallback) throw unavailable;
    settings.logger.warn(
      { file, provider: settings.provider, err: unavailable.message },
      `execution provider ${settings.provider} unavailable; falling back to CPU`,
    );
    provider = 'cpu';
    try {
      session = await ort.InferenceSession.create(file, { ...baseOptions, executionProviders: ['cpu'] });
    } catch (cpuError) {
      throw describeCreateError(file, cpuError);
    }
  }
  const inputs = specsOf(session.inputMetadata, file, 'input');
  const outputs = specsOf(session.outputMetadata, file, 'output');
  return {
    file,
    provider,
    inputs,
    outputs,
    async run(feeds, outputNames, stage) {
      try {
        return await session.run(feeds, outputNames as string[]);
      } catch (error) {
        throw toInferenceError(`${stage} (${file})`, error);
      }
    },
    async release() {
      await session.release();
    },
  };
}

/** A float tensor in the element type the model declares (float32, or float16 as bit patterns). */
export function floatTensor(spec: TensorSpec, data: Float32Array, dims: readonly number[]): Tensor {
  if (spec.type === 'float16') {
    const bits = new Uint16Array(data.length);
    for (let i = 0; i < data.length; i++) bits[i] = float32ToFloat16Bits(data[i]!);
    return new ort.Tensor('float16', bits, dims);
  }
  return new ort.Tensor('float32', data, dims);
}

/** Integer-valued data (token ids, position ids) in whatever numeric type the model declares. */
export function integerValuedTensor(spec: TensorSpec, data: ArrayLike<number>, dims: readonly number[]): Tensor {
  switch (spec.type) {
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(Array.from(data, (v) => BigInt(v))), dims);
    case 'int32':
      return new ort.Tensor('int32', Int32Array.from(data), dims);
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(data), dims);
    case 'float16':
      return floatTensor(spec, Float32Array.from(data), dims);
    default:
      throw new EngineError('MODEL_UNSUPPORTED', `input ${spec.name} has type ${spec.type}; expected int64, int32, float32 or float16`);
  }
}

/** Reads a float32 or float16 output as float32. */
export function readFloatTensor(tensor: Tensor, what: string): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array;
  if (tensor.type === 'float16') {
    const bits = tensor.data as Uint16Array;
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = float16BitsToFloat32(bits[i]!);
    return out;
  }
  throw new EngineError('MODEL_UNSUPPORTED', `${what}: output type ${tensor.type} is not float32 or float16`);
}

export const FLOAT_TYPES: ReadonlySet<string> = new Set(['float32', 'float16']);
export const INTEGER_VALUED_TYPES: ReadonlySet<string> = new Set(['int64', 'int32', 'float32', 'float16']);
