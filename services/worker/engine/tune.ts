/**
 * Which onnxruntime thread settings are fastest for a model on this machine: each candidate (intra-op
 * threads × spinning) gets its own pipeline, a warm-up pass, then timed passes at the model's defaults.
 * `t2i model tune` prints the table and the environment variables to set; nothing is guessed from core counts.
 */
import { FluxPipeline } from './flux-pipeline.ts';
import type { ExecutionProviderName } from './types.ts';

export interface TuneCandidate {
  /** undefined: onnxruntime's own choice (one thread per physical core). */
  threads: number | undefined;
  spinning: boolean;
}

export interface TuneResult extends TuneCandidate {
  imagesPerSecond: number;
  msPerBatch: number;
}

export interface TuneOptions {
  modelDirectory: string;
  provider?: ExecutionProviderName;
  batch: number;
  /** Timed passes per candidate (after one warm-up pass). */
  passes: number;
  candidates: TuneCandidate[];
  /** Called after each candidate (progress). */
  onResult?: (result: TuneResult, index: number, total: number) => void;
}

export async function tuneThreads(options: TuneOptions): Promise<{ results: TuneResult[]; best: TuneResult }> {
  const results: TuneResult[] = [];
  for (const [index, candidate] of options.candidates.entries()) {
    const pipeline = new FluxPipeline({
      modelDirectory: options.modelDirectory,
      ...(options.provider ? { provider: options.provider } : {}),
      ...(candidate.threads !== undefined ? { intraOpNumThreads: candidate.threads } : {}),
      intraOpSpinning: candidate.spinning,
      maxBatchSize: options.batch,
      preferredBatchSize: options.batch,
    });
    try {
      await pipeline.load();
      const batch = (pass: number) =>
        Array.from({ length: options.batch }, (_, i) => ({ prompt: `a red fox in the snow, photo ${pass}-${i}`, seed: pass * 1000 + i }));
      await pipeline.generate(batch(0));
      const start = performance.now();
      for (let pass = 1; pass <= options.passes; pass++) await pipeline.generate(batch(pass));
      const ms = performance.now() - start;
      const result: TuneResult = {
        ...candidate,
        imagesPerSecond: (options.passes * options.batch) / (ms / 1000),
        msPerBatch: ms / options.passes,
      };
      results.push(result);
      options.onResult?.(result, index, options.candidates.length);
    } finally {
      await pipeline.close();
    }
  }
  const best = results.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
  return { results, best };
}
