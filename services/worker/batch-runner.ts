import type { GenerateRequest, GeneratedImage, ImageEngine } from './engine/index.ts';
import { isEngineError } from './engine/index.ts';
import { describeError } from '../common/errors.ts';

export type ItemOutcome = { ok: true; image: GeneratedImage } | { ok: false; error: string; attempts: number };

export interface RecoveryOptions {
  /** Engine attempts for a prompt that fails on its own before it is given up. */
  maxAttempts: number;
  /** Called when the engine ran out of memory on a batch of `size`: the caller shrinks later batches. */
  onOutOfMemory?: (size: number) => void;
  /** Called for every failed engine pass (for logs and metrics). */
  onFailure?: (size: number, error: unknown) => void;
}

/**
 * Runs one engine pass and recovers from failures without letting one prompt sink its batch-mates:
 * a failed batch is split in halves and each half retried; a prompt that fails alone is retried up to
 * maxAttempts, then reported as failed (the worker dead-letters it). Results stay in request order.
 */
export async function generateWithRecovery(
  engine: ImageEngine,
  requests: readonly GenerateRequest[],
  options: RecoveryOptions,
): Promise<ItemOutcome[]> {
  const run = async (part: readonly GenerateRequest[], attempt: number): Promise<ItemOutcome[]> => {
    try {
      const images = await engine.generate(part);
      return images.map((image) => ({ ok: true, image }));
    } catch (error) {
      // An engine that is gone (closed, its thread dead) fails every prompt alike: not the prompts' fault.
      if (isEngineError(error) && error.code === 'NOT_LOADED') throw error;
      options.onFailure?.(part.length, error);
      if (isEngineError(error) && error.code === 'OUT_OF_MEMORY') options.onOutOfMemory?.(part.length);
      if (part.length > 1) {
        const middle = Math.ceil(part.length / 2);
        // One half at a time: running both at once would bring back the memory pressure.
        const left = await run(part.slice(0, middle), 1);
        const right = await run(part.slice(middle), 1);
        return [...left, ...right];
      }
      if (attempt < options.maxAttempts) return run(part, attempt + 1);
      return [{ ok: false, error: describeError(error), attempts: attempt }];
    }
  };
  return run(requests, 1);
}
