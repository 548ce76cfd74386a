/** The FLUX image engine: what the worker and the CLI import. */
export { FluxPipeline, createFluxPipeline, FLUX_DEV_DEFAULTS, FLUX_SCHNELL_DEFAULTS } from './flux-pipeline.ts';
export type { DenoiseInput, EncodePromptsOptions, GenerateOptions, PromptEncoding } from './flux-pipeline.ts';
export type { FluxPipelineOptions, SessionOpener } from './options.ts';
export { EngineError, ENGINE_ERROR_CODES, isEngineError, looksLikeOutOfMemory } from './errors.ts';
export type { EngineErrorCode } from './errors.ts';
export { a1111Parameters, encodePng, imageMetadata, readPngText, readPngMetadata, METADATA_KEYWORD, PARAMETERS_KEYWORD } from './png.ts';
export type { ImageMetadata, RgbImage, EncodePngOptions } from './png.ts';
export type {
  EngineInfo,
  EngineLogger,
  ExecutionProviderName,
  GenerateRequest,
  GeneratedImage,
  GraphOptimizationLevel,
  ImageEngine,
  ModelDefaults,
  PipelineStage,
  StageTiming,
} from './types.ts';
export { withGenerate } from './types.ts';
