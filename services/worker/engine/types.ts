/** Public types of the image engine: what the worker hands in and gets back. */

export type ExecutionProviderName = 'cpu' | 'cuda' | 'tensorrt';
export type GraphOptimizationLevel = 'disabled' | 'basic' | 'extended' | 'all';

/** Structured logger; pino's `logger.warn(obj, msg)` fits. */
export interface EngineLogger {
  warn(details: Record<string, unknown>, message: string): void;
  info?(details: Record<string, unknown>, message: string): void;
}

export interface GenerateRequest {
  prompt: string;
  /** Non-negative safe integer; same seed + prompt + settings + model -> same image. */
  seed: number;
  /** Pixels; a multiple of 16 for FLUX (vaeScaleFactor * 2). Default: the model's t2i.json, else 1024. */
  width?: number;
  /** Pixels; a multiple of 16 for FLUX. Default: the model's t2i.json, else 1024. */
  height?: number;
  /** Euler steps >= 1. Default: the model's t2i.json, else 28 (4 for models without a guidance input). */
  steps?: number;
  /** Distilled guidance scale fed to the transformer (ignored by models without the input). Default: t2i.json, else 3.5. */
  guidance?: number;
  /**
   * True classifier-free guidance (diffusers FluxPipeline's `true_cfg_scale`, with an empty negative
   * prompt): above 1 the transformer also runs unconditioned at every step and the velocity becomes
   * neg + scale * (cond - neg), twice the transformer work. 1 turns it off. Default: t2i.json
   * `true_cfg_scale`, else 1.
   */
  trueCfgScale?: number;
}

export interface GeneratedImage {
  width: number;
  height: number;
  /** RGB, 8 bits per channel, row-major HWC: width * height * 3 bytes. */
  data: Uint8Array;
  seed: number;
  steps: number;
  /** The guidance scale used (reported even when the model has no guidance input). */
  guidance: number;
  /** The true CFG scale, present when it was used (above 1). */
  trueCfgScale?: number;
  /** Model name (t2i.json `name`, else the model directory's name). */
  model: string;
  /** Present when a tokenizer cut the prompt short: its token count and the encoder's limit. */
  truncation?: { clip?: { tokens: number; limit: number }; t5?: { tokens: number; limit: number } };
}

/** Defaults applied to requests that leave a value out. */
export interface ModelDefaults {
  width: number;
  height: number;
  steps: number;
  guidance: number;
  /** True CFG scale (1: off; FLUX.1 exports leave it off). */
  trueCfgScale: number;
  /** T5 sequence length in tokens. */
  maxSequenceLength: number;
}

export interface EngineInfo {
  /** Model name (t2i.json `name`, else the directory name). */
  model: string;
  modelDirectory: string;
  defaults: ModelDefaults;
  /** Provider the sessions actually run on (may be 'cpu' after an allowed fallback). */
  provider: ExecutionProviderName;
  /** Whether the transformer takes a guidance input (FLUX dev) or not (schnell). */
  usesGuidance: boolean;
  /** Width and height must be multiples of this (vaeScaleFactor * 2). */
  sizeMultiple: number;
  /**
   * Largest batch one model pass takes: the models' fixed batch dimension if any, else the
   * `maxBatchSize` option. Larger generate() calls are split into passes of this size.
   */
  maxBatchSize: number;
  /** Batch size the worker should aim for (the `preferredBatchSize` option, capped by maxBatchSize). */
  preferredBatchSize: number;
}

export interface ImageEngine {
  readonly info: EngineInfo;
  load(): Promise<void>;
  /** Results come back in request order. */
  generate(requests: readonly GenerateRequest[]): Promise<GeneratedImage[]>;
  close(): Promise<void>;
}

export type PipelineStage = 'tokenize' | 'clip' | 't5' | 'transformer' | 'vae' | 'postprocess';

/** Emitted after each stage of a model pass when a timing hook is installed. */
export interface StageTiming {
  stage: PipelineStage;
  /** Wall-clock milliseconds (performance.now based). */
  durationMs: number;
  batchSize: number;
  /** 0-based Euler step, transformer stage only. */
  step?: number;
}

/** `engine` with its generate() replaced (a decorator: timing, fault injection); info, load and close pass through. */
export function withGenerate(engine: ImageEngine, generate: ImageEngine['generate']): ImageEngine {
  return {
    get info() {
      return engine.info;
    },
    load: () => engine.load(),
    close: () => engine.close(),
    generate,
  };
}
