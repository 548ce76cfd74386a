import { setTimeout as sleep } from 'node:timers/promises';
import type { EngineInfo, GenerateRequest, GeneratedImage, ImageEngine } from '../../services/worker/engine/index.ts';

/**
 * An engine that waits a fixed time per batch and returns flat grey images, so that bench/scale can
 * measure Kafka/S3 orchestration without GPUs. It reaches the worker through its ImageEngine seam
 * (latency-worker.ts); nothing in services/ knows about it.
 */
export class FixedLatencyEngine implements ImageEngine {
  readonly info: EngineInfo;

  constructor(
    private readonly latencyMs: number,
    defaults = { width: 64, height: 64, steps: 4, guidance: 3.5, trueCfgScale: 1, maxSequenceLength: 64 },
    maxBatchSize = 8,
  ) {
    this.info = {
      model: `fixed-latency-${latencyMs}ms`,
      modelDirectory: '(none: benchmark engine)',
      defaults,
      provider: 'cpu',
      usesGuidance: true,
      sizeMultiple: 16,
      maxBatchSize,
      preferredBatchSize: Math.min(4, maxBatchSize),
    };
  }

  async load(): Promise<void> {}

  async generate(requests: readonly GenerateRequest[]): Promise<GeneratedImage[]> {
    await sleep(this.latencyMs);
    return requests.map((r) => {
      const width = r.width ?? this.info.defaults.width;
      const height = r.height ?? this.info.defaults.height;
      return {
        width,
        height,
        data: new Uint8Array(width * height * 3).fill(128),
        seed: r.seed,
        steps: r.steps ?? this.info.defaults.steps,
        guidance: r.guidance ?? this.info.defaults.guidance,
        model: this.info.model,
      };
    });
  }

  async close(): Promise<void> {}
}
