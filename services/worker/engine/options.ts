/** FluxPipeline options: what callers may pass, and the validated, defaulted form used inside. */
import { EngineError } from './errors.ts';
import { openModelSession, type ModelSession, type SessionSettings } from './onnx-session.ts';
import type { EngineLogger, ExecutionProviderName, GraphOptimizationLevel, StageTiming } from './types.ts';

/** Opens one component's session. The default is onnxruntime by path; a wrapper can observe or alter a component. */
export type SessionOpener = (file: string, settings: SessionSettings) => Promise<ModelSession>;

export interface FluxPipelineOptions {
  /** Model folder in optimum's ONNX layout (model_index.json, text_encoder/, …, t2i.json). */
  modelDirectory: string;
  /** Execution provider. Default 'cpu'. 'cuda' and 'tensorrt' need onnxruntime-node's CUDA 12 libraries. */
  provider?: ExecutionProviderName;
  /** If the requested GPU provider cannot be created, run on CPU with a warning instead of failing. Default false. */
  allowCpuFallback?: boolean;
  /** GPU ordinal for cuda/tensorrt. Default 0. */
  deviceId?: number;
  /**
   * onnxruntime graph optimization level. Default 'all' (fastest on CPU; still within the parity
   * tolerances on the tiny model). 'basic' gives the tightest agreement with PyTorch fp32.
   */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Threads per operator. Default: onnxruntime's choice (one per physical core). */
  intraOpNumThreads?: number;
  /**
   * Let idle intra-op threads spin (busy-wait) for the next operator. Default false: with spinning, 2 threads
   * on a 2-core machine ran the tiny schnell-like model at 44 images/s against 91 without (bench/engine/vs-torch),
   * and spinning threads take cores from Kafka, PNG encoding and uploads on GPU nodes too.
   */
  intraOpSpinning?: boolean;
  /** Largest batch per model pass (images). Default 8. A model's fixed batch dimension lowers it. */
  maxBatchSize?: number;
  /** Batch size the worker should aim for (images). Default 4, capped by maxBatchSize. */
  preferredBatchSize?: number;
  /** Receives warnings (e.g. a CPU fallback). Default: silent. */
  logger?: EngineLogger;
  /** Called after every stage of every model pass, for benchmarks and metrics. Default: none. */
  onStageTiming?: (timing: StageTiming) => void;
  /** How a component's session is opened. Default: onnxruntime by path (openModelSession). */
  openSession?: SessionOpener;
  /** TensorRT provider: build fp16 engines. Default true. */
  tensorrtFp16?: boolean;
  /** TensorRT provider: folder where built engines are cached (building takes minutes). Default: none. */
  tensorrtCacheDirectory?: string;
}

export interface ResolvedPipelineOptions {
  readonly modelDirectory: string;
  readonly provider: ExecutionProviderName;
  readonly allowCpuFallback: boolean;
  readonly deviceId: number;
  readonly graphOptimizationLevel: GraphOptimizationLevel;
  readonly intraOpNumThreads: number | undefined;
  readonly intraOpSpinning: boolean;
  readonly maxBatchSize: number;
  readonly preferredBatchSize: number;
  readonly logger: EngineLogger;
  readonly onStageTiming: ((timing: StageTiming) => void) | undefined;
  readonly openSession: SessionOpener;
  readonly tensorrtFp16: boolean;
  readonly tensorrtCacheDirectory: string | undefined;
}

const SILENT_LOGGER: EngineLogger = { warn() {} };
const PROVIDERS: readonly ExecutionProviderName[] = ['cpu', 'cuda', 'tensorrt'];
const LEVELS: readonly GraphOptimizationLevel[] = ['disabled', 'basic', 'extended', 'all'];

function positiveInteger(value: number | undefined, name: string, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) {
    throw new EngineError('BAD_REQUEST', `FluxPipeline option ${name} must be a positive integer, got ${value}`);
  }
  return value;
}

export function resolvePipelineOptions(options: FluxPipelineOptions): ResolvedPipelineOptions {
  if (typeof options.modelDirectory !== 'string' || options.modelDirectory.length === 0) {
    throw new EngineError('BAD_REQUEST', 'FluxPipeline option modelDirectory is required');
  }
  const provider = options.provider ?? 'cpu';
  if (!PROVIDERS.includes(provider)) {
    throw new EngineError('BAD_REQUEST', `FluxPipeline option provider must be one of ${PROVIDERS.join(', ')}, got ${String(provider)}`);
  }
  const graphOptimizationLevel = options.graphOptimizationLevel ?? 'all';
  if (!LEVELS.includes(graphOptimizationLevel)) {
    throw new EngineError('BAD_REQUEST', `FluxPipeline option graphOptimizationLevel must be one of ${LEVELS.join(', ')}`);
  }
  const maxBatchSize = positiveInteger(options.maxBatchSize, 'maxBatchSize', 8)!;
  const preferredBatchSize = Math.min(positiveInteger(options.preferredBatchSize, 'preferredBatchSize', 4)!, maxBatchSize);
  const deviceId = options.deviceId ?? 0;
  if (!Number.isInteger(deviceId) || deviceId < 0) {
    throw new EngineError('BAD_REQUEST', `FluxPipeline option deviceId must be a non-negative integer, got ${deviceId}`);
  }
  return Object.freeze({
    modelDirectory: options.modelDirectory,
    provider,
    allowCpuFallback: options.allowCpuFallback ?? false,
    deviceId,
    graphOptimizationLevel,
    intraOpNumThreads: positiveInteger(options.intraOpNumThreads, 'intraOpNumThreads', undefined),
    intraOpSpinning: options.intraOpSpinning ?? false,
    maxBatchSize,
    preferredBatchSize,
    logger: options.logger ?? SILENT_LOGGER,
    onStageTiming: options.onStageTiming,
    openSession: options.openSession ?? openModelSession,
    tensorrtFp16: options.tensorrtFp16 ?? true,
    tensorrtCacheDirectory: options.tensorrtCacheDirectory,
  });
}
