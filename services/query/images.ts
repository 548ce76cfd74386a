/** Images of a job: deterministic keys, the generation metadata in their PNG text chunks, cached thumbnails. */
import sharp from 'sharp';
import type { Logger } from 'pino';
import type { ObjectStore } from '../common/object-store.ts';
import { imageKey, thumbKey } from '../common/bucket-layout.ts';
import type { ImageMeta } from './types.ts';
import { readPngTextChunks as readCommonPngTextChunks } from '../common/png-text.ts';

/** Keyword of the worker's iTXt chunk: the generation metadata as JSON. */
export const PNG_METADATA_KEYWORD = 't2i-stream';

/** Text chunks sit right after IHDR, so the head of the file holds them. */
const METADATA_READ_BYTES = 64 * 1024;

export interface PngMetadata extends ImageMeta {
  prompt?: string;
}

/**
 * The generation metadata of a stored image from its PNG text chunks (the worker's `t2i-stream` JSON
 * iTXt, or one tEXt/iTXt per field: prompt, seed, steps, guidance, width, height or size "WxH", model).
 * Reads only the head of the file. Undefined when the image does not exist.
 */
export async function readImageMetadata(store: ObjectStore, key: string): Promise<PngMetadata | undefined> {
  const stream = await store.getStream(key, { start: 0, end: METADATA_READ_BYTES - 1 });
  if (!stream) return undefined;
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return metadataFromTexts(readPngTextChunks(Buffer.concat(chunks)));
}

export function metadataFromTexts(texts: Record<string, string>): PngMetadata {
  const meta: PngMetadata = {};
  const json = texts[PNG_METADATA_KEYWORD];
  if (json !== undefined) {
    try {
      const value: unknown = JSON.parse(json);
      if (typeof value === 'object' && value !== null) Object.assign(meta, value);
    } catch {
      // not JSON: fall through to the per-field chunks
    }
  }
  const lower = Object.fromEntries(Object.entries(texts).map(([k, v]) => [k.toLowerCase(), v]));
  if (meta.prompt === undefined && lower.prompt !== undefined) meta.prompt = lower.prompt;
  if (meta.model === undefined && lower.model !== undefined) meta.model = lower.model;
  for (const field of ['seed', 'steps', 'guidance', 'width', 'height'] as const) {
    const text = lower[field];
    if (meta[field] === undefined && text !== undefined && text.trim() !== '' && Number.isFinite(Number(text))) meta[field] = Number(text);
  }
  const size = /^(\d+)\s*[x×]\s*(\d+)$/.exec(lower.size ?? '');
  if (size && meta.width === undefined) meta.width = Number(size[1]);
  if (size && meta.height === undefined) meta.height = Number(size[2]);
  return meta;
}

/** tEXt and uncompressed iTXt chunks, keyword → text, from the (possibly truncated) head of a PNG. */
export function readPngTextChunks(png: Buffer): Record<string, string> {
  return readCommonPngTextChunks(png, { headOnly: true });
}

export interface ThumbnailOptions {
  /** Longest side in pixels. */
  size: number;
  logger?: Logger;
}

/**
 * A WebP thumbnail of image (row, k): from the cache under `jobs/<id>/thumbs/<size>/`, else made with
 * sharp from the image and cached (keys are deterministic, so two makers write the same bytes). A cache
 * write that fails (read-only credentials) is logged and the thumbnail still served. Undefined when the
 * image does not exist.
 */
export async function thumbnail(
  store: ObjectStore,
  jobId: string,
  row: number,
  k: number,
  options: ThumbnailOptions,
): Promise<Buffer | undefined> {
  const cacheKey = thumbKey(jobId, row, k, options.size);
  const cached = await store.get(cacheKey);
  if (cached) return cached;
  const image = await store.get(imageKey(jobId, row, k));
  if (!image) return undefined;
  const thumb = await sharp(image)
    .resize(options.size, options.size, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 80 })
    .toBuffer();
  try {
    await store.put(cacheKey, thumb, 'image/webp');
  } catch (error) {
    options.logger?.warn({ err: error, key: cacheKey }, 'could not cache thumbnail');
  }
  return thumb;
}
