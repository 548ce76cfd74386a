import type { Logger } from 'pino';
import type { ModelConfig } from '../common/config.ts';
import type { ImageEngine } from './engine/index.ts';
import { EngineThread } from './engine-thread.ts';

/** The engine a worker runs: FLUX on onnxruntime-node, in its own thread. */
export function createEngine(model: ModelConfig, logger: Logger, options: { maxBatch?: number } = {}): ImageEngine {
  // In its own thread: onnxruntime-node blocks the thread that runs a model (see engine-thread.ts).
  return new EngineThread({
    modelDirectory: model.dir,
    provider: model.executionProvider,
    allowCpuFallback: model.allowCpuFallback,
    deviceId: model.deviceId,
    tensorrtFp16: model.tensorrtFp16,
    ...(model.tensorrtCacheDir !== undefined ? { tensorrtCacheDirectory: model.tensorrtCacheDir } : {}),
    ...(model.intraOpThreads > 0 ? { intraOpNumThreads: model.intraOpThreads } : {}),
    intraOpSpinning: model.intraOpSpinning,
    ...(options.maxBatch !== undefined ? { maxBatchSize: Math.max(8, options.maxBatch), preferredBatchSize: options.maxBatch } : {}),
    logger,
  });
}
