/**
 * The non-finite guard. A NaN or Inf in text embeddings, a transformer step or the decoded image (the
 * known float16 overflow of FLUX's T5 and VAE) would otherwise become a black or garbage PNG reported
 * as a success: postprocessing clamps NaN to 0. Each stage's output is checked, and the batch fails
 * with the stage named, so the worker's poison handling applies.
 */
import { EngineError } from './errors.ts';

/** Throws NON_FINITE when `data` holds a NaN or an infinity. `float16` adds the fp16 hint. */
export function assertFinite(data: Float32Array, stage: string, file: string, float16: boolean): void {
  let bad = 0;
  let first = -1;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    // v - v is NaN for NaN and ±Infinity, 0 for every finite number: one comparison per value.
    if (v - v !== 0) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad === 0) return;
  const hint = float16
    ? '; this component runs in float16, which overflows on some prompts and sizes (a known FLUX issue): use a float32 export of it, or keep it out of the --float16 conversion'
    : '';
  throw new EngineError('NON_FINITE', `${stage} produced ${bad} non-finite values (NaN/Inf; first at index ${first}) in ${file}${hint}`);
}
