import type { Logger } from 'pino';
import type { ModelConfig } from '../common/config.ts';
import { createFluxPipeline, type ImageEngine } from './engine/index.ts';
import { FixedLatencyEngine } from './fixed-latency-engine.ts';

/** The engine a worker runs: FLUX on onnxruntime-node, or (benchmarks only, when asked) the fixed-latency stand-in. */
export function createEngine(
  model: ModelConfig,
  logger: Logger,
  options: { maxBatch?: number; engineLatencyMs?: number } = {},
): ImageEngine {
  if (options.engineLatencyMs !== undefined) {
    logger.warn(
      { latencyMs: options.engineLatencyMs },
      'BENCHMARK MODE: inference replaced by a fixed per-batch delay; images are flat grey',
    );
    return new FixedLatencyEngine(options.engineLatencyMs, undefined, Math.max(8, options.maxBatch ?? 8));
  }
  return createFluxPipeline({
    modelDirectory: model.dir,
    provider: model.executionProvider,
    allowCpuFallback: model.allowCpuFallback,
    ...(model.intraOpThreads > 0 ? { intraOpNumThreads: model.intraOpThreads } : {}),
    ...(options.maxBatch !== undefined ? { maxBatchSize: Math.max(8, options.maxBatch), preferredBatchSize: options.maxBatch } : {}),
    logger,
  });
}
