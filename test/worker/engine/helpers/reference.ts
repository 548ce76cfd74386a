/**
 * Reader for test/fixtures/flux-reference (written by tools/flux_tiny/build.py from diffusers'
 * FluxPipeline in PyTorch fp32): cases.json plus raw little-endian C-order arrays.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT_FOR_TESTS } from './paths.ts';

export const REFERENCE_DIR = join(PACKAGE_ROOT_FOR_TESTS, 'test', 'fixtures', 'flux-reference');
export const TINY_MODEL_DIR = join(PACKAGE_ROOT_FOR_TESTS, 'models', 'tiny-flux');
export const TINY_FP16_MODEL_DIR = join(PACKAGE_ROOT_FOR_TESTS, 'models', 'tiny-flux-fp16');

export interface ArrayFile {
  file: string;
  dtype: 'float32' | 'uint8' | 'int64';
  shape: number[];
}

export interface ReferenceCase {
  name: string;
  prompts: string[];
  batch_size: number;
  width: number;
  height: number;
  num_inference_steps: number;
  guidance_scale: number;
  max_sequence_length: number;
  image_seq_len: number;
  mu: number;
  sigmas: number[];
  transformer_timestep_inputs: number[];
  transformer_guidance_input: number;
  clip_input_ids: number[][];
  t5_input_ids: number[][];
  files: Record<
    | 'pooled_prompt_embeds'
    | 'prompt_embeds'
    | 'img_ids'
    | 'initial_latents'
    | 'noise_pred_step0'
    | 'latents_after_step0'
    | 'final_latents'
    | 'vae_input'
    | 'vae_output'
    | 'image',
    ArrayFile
  > &
    /** Same algorithm run by onnxruntime (Python) with models/tiny-flux-fp16, fed the same ids and latents. */
    Partial<Record<'fp16_final_latents' | 'fp16_image', ArrayFile>>;
}

export interface TokenizerCase {
  text: string;
  clip_input_ids: number[];
  t5_input_ids: number[];
  t5_input_ids_512: number[];
}

export interface ScheduleReference {
  image_seq_len: number;
  num_inference_steps: number;
  mu: number;
  sigmas: number[];
  timesteps: number[];
}

export interface ReferenceSet {
  cases: ReferenceCase[];
  tokenizer_cases: TokenizerCase[];
  schedules: ScheduleReference[];
  clip: { bos_token_id: number; eos_token_id: number; pad_token_id: number; max_length: number };
}

export function referencesAvailable(): boolean {
  return existsSync(join(REFERENCE_DIR, 'cases.json')) && existsSync(join(TINY_MODEL_DIR, 'transformer', 'model.onnx'));
}

export function tinyModelAvailable(): boolean {
  return existsSync(join(TINY_MODEL_DIR, 'transformer', 'model.onnx')) && existsSync(join(TINY_MODEL_DIR, 'vae_decoder', 'model.onnx'));
}

export function loadReferences(): ReferenceSet {
  return JSON.parse(readFileSync(join(REFERENCE_DIR, 'cases.json'), 'utf8')) as ReferenceSet;
}

function bytesOf(entry: ArrayFile, dtype: ArrayFile['dtype']): Buffer {
  if (entry.dtype !== dtype) throw new Error(`${entry.file} is ${entry.dtype}, not ${dtype}`);
  const bytes = readFileSync(join(REFERENCE_DIR, entry.file));
  const count = entry.shape.reduce((a, b) => a * b, 1);
  const width = dtype === 'uint8' ? 1 : dtype === 'float32' ? 4 : 8;
  if (bytes.length !== count * width) throw new Error(`${entry.file}: ${bytes.length} bytes for shape [${entry.shape.join(', ')}]`);
  return bytes;
}

export function readFloat32(entry: ArrayFile): Float32Array {
  const bytes = bytesOf(entry, 'float32');
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

export function readUint8(entry: ArrayFile): Uint8Array {
  return new Uint8Array(bytesOf(entry, 'uint8'));
}

/** ||a - b|| / ||b|| */
export function relativeL2(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < expected.length; i++) {
    diff += (actual[i]! - expected[i]!) ** 2;
    norm += expected[i]! ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}

export function maxAbsDiff(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length ${actual.length} vs ${expected.length}`);
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(actual[i]! - expected[i]!));
  return max;
}

export function concatImages(images: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(images.reduce((sum, image) => sum + image.length, 0));
  let offset = 0;
  for (const image of images) {
    out.set(image, offset);
    offset += image.length;
  }
  return out;
}

/** Splits the [B, S, 4C] reference latents into one array per image. */
export function splitRows(data: Float32Array, rows: number): Float32Array[] {
  const size = data.length / rows;
  return Array.from({ length: rows }, (_, i) => data.slice(i * size, (i + 1) * size));
}
