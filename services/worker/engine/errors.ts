/**
 * The engine's one error type. A closed set of codes lets the worker decide what to do without
 * parsing messages: retriable errors back off and retry, OUT_OF_MEMORY shrinks the batch, the
 * rest dead-letter.
 */
export const ENGINE_ERROR_CODES = [
  /** The model directory, a component folder or a file in it does not exist or cannot be read. */
  'MODEL_NOT_FOUND',
  /** The model exists but the engine cannot use it (bf16 I/O, missing input, wrong rank, …). */
  'MODEL_UNSUPPORTED',
  /** The requested execution provider (CUDA, TensorRT) cannot be created on this machine. */
  'PROVIDER_UNAVAILABLE',
  /** onnxruntime could not allocate memory for a run; a smaller batch may succeed. */
  'OUT_OF_MEMORY',
  /** onnxruntime failed during a run for another reason. */
  'INFERENCE_FAILED',
  /** A stage produced NaN or Inf (e.g. a float16 overflow): the batch fails instead of yielding a black image. */
  'NON_FINITE',
  /** The request itself is invalid (size not a multiple of 16, steps < 1, …). */
  'BAD_REQUEST',
  /** generate() was called before load() or after close(). */
  'NOT_LOADED',
] as const;

export type EngineErrorCode = (typeof ENGINE_ERROR_CODES)[number];

const RETRIABLE_BY_DEFAULT: Readonly<Record<EngineErrorCode, boolean>> = {
  MODEL_NOT_FOUND: false,
  MODEL_UNSUPPORTED: false,
  PROVIDER_UNAVAILABLE: false,
  // Retriable because the caller is expected to retry with a smaller batch.
  OUT_OF_MEMORY: true,
  INFERENCE_FAILED: true,
  // The same inputs give the same NaN: only splitting the batch (to find the prompt) can help.
  NON_FINITE: false,
  BAD_REQUEST: false,
  NOT_LOADED: false,
};

export interface EngineErrorOptions {
  /** Overrides the code's default retriability. */
  retriable?: boolean;
  cause?: unknown;
}

export class EngineError extends Error {
  override readonly name = 'EngineError';
  readonly code: EngineErrorCode;
  readonly retriable: boolean;

  constructor(code: EngineErrorCode, message: string, options: EngineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? RETRIABLE_BY_DEFAULT[code];
  }
}

export function isEngineError(value: unknown): value is EngineError {
  return value instanceof EngineError;
}

// onnxruntime reports allocation failures with these phrases (CPU arena, BFC arena on CUDA,
// cudaMalloc, TensorRT). Matching text is all we can do: the JS binding has no error codes.
const OUT_OF_MEMORY_PATTERNS = [
  /failed to allocate memory/i,
  /out of memory/i,
  /\bOOM\b/,
  /bad_alloc/i,
  /cudaErrorMemoryAllocation/i,
  /CUBLAS_STATUS_ALLOC_FAILED/i,
  /CUDNN_STATUS_ALLOC_FAILED/i,
  /available memory of \d+ is smaller than requested bytes/i,
];

export function looksLikeOutOfMemory(message: string): boolean {
  return OUT_OF_MEMORY_PATTERNS.some((pattern) => pattern.test(message));
}

/** Wraps an error thrown by an onnxruntime run into an EngineError (OUT_OF_MEMORY or INFERENCE_FAILED). */
export function toInferenceError(stage: string, error: unknown): EngineError {
  if (error instanceof EngineError) return error;
  const message = error instanceof Error ? error.message : String(error);
  if (looksLikeOutOfMemory(message)) {
    return new EngineError('OUT_OF_MEMORY', `${stage}: out of memory: ${message}`, { cause: error });
  }
  return new EngineError('INFERENCE_FAILED', `${stage} failed: ${message}`, { cause: error });
}
