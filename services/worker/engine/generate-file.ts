/**
 * One image from a local model, written as a PNG with its generation metadata (what `t2i generate`
 * does). Same options and seed -> byte-identical file.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { FluxPipeline } from './flux-pipeline.ts';
import { encodePng, imageMetadata } from './png.ts';
import { DEFAULT_MODEL_DIR } from '../../common/paths.ts';
import type { EngineLogger, ExecutionProviderName, GeneratedImage, GraphOptimizationLevel } from './types.ts';

export interface GenerateFileOptions {
  prompt: string;
  /** PNG path to write; parent folders are created. */
  output: string;
  /** Noise seed, non-negative safe integer. Default 0. */
  seed?: number;
  /** Euler steps. Default: the model's t2i.json. */
  steps?: number;
  /** Pixels, multiple of 16. Default: the model's t2i.json. */
  width?: number;
  /** Pixels, multiple of 16. Default: the model's t2i.json. */
  height?: number;
  /** Guidance scale. Default: the model's t2i.json. */
  guidance?: number;
  /** Model folder. Default: models/tiny-flux in the repository. */
  modelDirectory?: string;
  /** Default 'cpu'. */
  provider?: ExecutionProviderName;
  /** Default false. */
  allowCpuFallback?: boolean;
  /** Default: FluxPipeline's default. */
  graphOptimizationLevel?: GraphOptimizationLevel;
  /** Default: onnxruntime's choice. */
  intraOpNumThreads?: number;
  /** Default: silent. */
  logger?: EngineLogger;
}

export interface GenerateFileResult {
  /** Absolute path of the written PNG. */
  output: string;
  /** PNG size in bytes. */
  bytes: number;
  seed: number;
  steps: number;
  guidance: number;
  width: number;
  height: number;
  model: string;
  provider: ExecutionProviderName;
  /** Present when a tokenizer cut the prompt short. */
  truncation?: GeneratedImage['truncation'];
  /** Wall time from model load to file written, milliseconds. */
  durationMs: number;
}

export async function generateFile(options: GenerateFileOptions): Promise<GenerateFileResult> {
  const started = performance.now();
  const pipeline = new FluxPipeline({
    modelDirectory: options.modelDirectory ?? DEFAULT_MODEL_DIR,
    ...(options.provider !== undefined ? { provider: options.provider } : {}),
    ...(options.allowCpuFallback !== undefined ? { allowCpuFallback: options.allowCpuFallback } : {}),
    ...(options.graphOptimizationLevel !== undefined ? { graphOptimizationLevel: options.graphOptimizationLevel } : {}),
    ...(options.intraOpNumThreads !== undefined ? { intraOpNumThreads: options.intraOpNumThreads } : {}),
    ...(options.logger !== undefined ? { logger: options.logger } : {}),
    maxBatchSize: 1,
  });
  try {
    await pipeline.load();
    const [image] = await pipeline.generate([
      {
        prompt: options.prompt,
        seed: options.seed ?? 0,
        ...(options.steps !== undefined ? { steps: options.steps } : {}),
        ...(options.width !== undefined ? { width: options.width } : {}),
        ...(options.height !== undefined ? { height: options.height } : {}),
        ...(options.guidance !== undefined ? { guidance: options.guidance } : {}),
      },
    ]);
    const generated = image!;
    const { prompt: _prompt, ...settings } = imageMetadata(options.prompt, generated);
    const png = await encodePng(generated, { prompt: options.prompt, ...settings });
    const output = resolve(options.output);
    await mkdir(dirname(output), { recursive: true });
    await writeFile(output, png);
    return {
      output,
      bytes: png.length,
      ...settings,
      provider: pipeline.info.provider,
      ...(generated.truncation ? { truncation: generated.truncation } : {}),
      durationMs: performance.now() - started,
    };
  } finally {
    await pipeline.close();
  }
}
