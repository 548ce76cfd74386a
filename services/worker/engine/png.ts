/**
 * PNG output with generation metadata. sharp (libspng) encodes the pixels; it has no API for
 * arbitrary text chunks (keepMetadata/withMetadata only carry EXIF, ICC and XMP), so the metadata
 * goes into an iTXt chunk (UTF-8, uncompressed; tEXt would be Latin-1 and mangle prompts) that we
 * insert right after IHDR with its CRC. The same image and metadata always give the same bytes.
 */
import sharp from 'sharp';
import { isPng, readPngTextChunks } from '../../common/png-text.ts';
import { EngineError } from './errors.ts';

/** Keyword of the iTXt chunk holding the JSON-encoded ImageMetadata. */
export const METADATA_KEYWORD = 't2i-stream';
/** Keyword of the AUTOMATIC1111-style text that image viewers and prompt tools read. */
export const PARAMETERS_KEYWORD = 'parameters';

export interface ImageMetadata {
  prompt: string;
  seed: number;
  steps: number;
  guidance: number;
  /** True CFG scale, present when it was used (above 1). */
  trueCfgScale?: number;
  width: number;
  height: number;
  model: string;
}

/** The metadata of a generated image (what its PNG carries and what is reported about it). */
export function imageMetadata(prompt: string, image: Omit<ImageMetadata, 'prompt'>): ImageMetadata {
  return {
    prompt,
    seed: image.seed,
    steps: image.steps,
    guidance: image.guidance,
    ...(image.trueCfgScale !== undefined && image.trueCfgScale > 1 ? { trueCfgScale: image.trueCfgScale } : {}),
    width: image.width,
    height: image.height,
    model: image.model,
  };
}

export interface RgbImage {
  width: number;
  height: number;
  /** RGB uint8, HWC, width * height * 3 bytes. */
  data: Uint8Array;
}

export interface EncodePngOptions {
  /** zlib level 0-9. Default 6. */
  compressionLevel?: number;
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const chunk = Buffer.alloc(12 + data.length);
  chunk.writeUInt32BE(data.length, 0);
  chunk.write(type, 4, 'latin1');
  data.copy(chunk, 8);
  chunk.writeUInt32BE(crc32(chunk.subarray(4, 8 + data.length)), 8 + data.length);
  return chunk;
}

/** iTXt: keyword, NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, UTF-8 text. */
function iTxtChunk(keyword: string, text: string): Buffer {
  if (!/^[\x20-\x7e]{1,79}$/.test(keyword)) throw new EngineError('BAD_REQUEST', `invalid PNG text keyword ${JSON.stringify(keyword)}`);
  return pngChunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}

/** tEXt (Latin-1) for ASCII text, else iTXt (UTF-8): what PIL, and so AUTOMATIC1111, writes. */
function textChunk(keyword: string, text: string): Buffer {
  if (/^[\n\x20-\x7e]*$/.test(text))
    return pngChunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
  return iTxtChunk(keyword, text);
}

/**
 * The generation settings as AUTOMATIC1111 (and Forge, ComfyUI's readers, civitai) write them: the
 * prompt, then one line of `Key: value` pairs. FLUX's guidance is "Distilled CFG Scale" (Forge's name),
 * true classifier-free guidance (1 when off) is "CFG scale";
 * the sampler is the flow-matching Euler sampler.
 */
export function a1111Parameters(metadata: ImageMetadata): string {
  const settings = [
    `Steps: ${metadata.steps}`,
    'Sampler: Euler',
    'Schedule type: Simple',
    `CFG scale: ${metadata.trueCfgScale ?? 1}`,
    `Distilled CFG Scale: ${metadata.guidance}`,
    `Seed: ${metadata.seed}`,
    `Size: ${metadata.width}x${metadata.height}`,
    `Model: ${metadata.model.replace(/[,\n]/g, ' ')}`,
  ];
  return `${metadata.prompt}\n${settings.join(', ')}`;
}

/** Inserts chunks right after IHDR (the first chunk, always 25 bytes long after the signature). */
function insertAfterHeader(png: Buffer, chunks: Buffer[]): Buffer {
  const headerEnd = PNG_SIGNATURE.length + 8 + png.readUInt32BE(PNG_SIGNATURE.length) + 4;
  return Buffer.concat([png.subarray(0, headerEnd), ...chunks, png.subarray(headerEnd)]);
}

export async function encodePng(image: RgbImage, metadata: ImageMetadata, options: EncodePngOptions = {}): Promise<Buffer> {
  if (image.data.length !== image.width * image.height * 3) {
    throw new EngineError('BAD_REQUEST', `image data has ${image.data.length} bytes, expected ${image.width}x${image.height}x3`);
  }
  const pixels = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
    .png({ compressionLevel: options.compressionLevel ?? 6, adaptiveFiltering: false, palette: false })
    .toBuffer();
  // Exactly these fields, in this order, whatever else the caller's object holds.
  const fields = imageMetadata(metadata.prompt, metadata);
  return insertAfterHeader(pixels, [
    iTxtChunk(METADATA_KEYWORD, JSON.stringify(fields)),
    textChunk(PARAMETERS_KEYWORD, a1111Parameters(fields)),
  ]);
}

/** All tEXt and uncompressed iTXt chunks of a PNG, keyword -> text (zTXt and compressed iTXt are skipped). */
export function readPngText(png: Uint8Array): Record<string, string> {
  if (!isPng(png)) throw new EngineError('BAD_REQUEST', 'not a PNG file');
  return readPngTextChunks(png);
}

/** The generation metadata written by encodePng, or undefined if the PNG has none. */
export function readPngMetadata(png: Uint8Array): ImageMetadata | undefined {
  const text = readPngText(png)[METADATA_KEYWORD];
  return text === undefined ? undefined : (JSON.parse(text) as ImageMetadata);
}
