/** Small helpers for splitting work into model passes (shared by the encoding, denoising and decoding stages). */
import type { PipelineStage } from './types.ts';

export function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/**
 * Repeats the last row until the batch reaches `target` rows, for exports with a fixed batch
 * dimension; the extra outputs are dropped by the caller.
 */
export function padRows(data: Float32Array, rows: number, target: number): Float32Array {
  if (rows >= target) return data;
  const rowSize = data.length / rows;
  const padded = new Float32Array(rowSize * target);
  padded.set(data);
  for (let r = rows; r < target; r++) padded.copyWithin(r * rowSize, (rows - 1) * rowSize, rows * rowSize);
  return padded;
}

export function concat(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Runs `work`, reporting its duration to `hook` when there is one. */
export type StageTimer = <T>(stage: PipelineStage, batchSize: number, work: () => Promise<T>, step?: number) => Promise<T>;
