const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && Buffer.from(bytes.buffer, bytes.byteOffset, 8).equals(PNG_SIGNATURE);
}

/**
 * tEXt and uncompressed iTXt chunks of a PNG, keyword → text (zTXt and compressed iTXt are skipped).
 * Works on a truncated head too (a ranged read): it stops at the first chunk that is not all there, and
 * with `headOnly` at the first image data, since the worker writes its metadata right after IHDR.
 * Returns {} for bytes that are not a PNG.
 */
export function readPngTextChunks(png: Uint8Array, options: { headOnly?: boolean } = {}): Record<string, string> {
  const buffer = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const texts: Record<string, string> = {};
  if (!isPng(buffer)) return texts;
  let offset = 8;
  while (offset + 8 <= buffer.length) {
    const length = buffer.readUInt32BE(offset);
    const type = buffer.toString('latin1', offset + 4, offset + 8);
    if (type === 'IEND' || (options.headOnly && type === 'IDAT') || offset + 8 + length > buffer.length) break;
    const data = buffer.subarray(offset + 8, offset + 8 + length);
    const nul = data.indexOf(0);
    if (type === 'tEXt' && nul > 0) {
      texts[data.toString('latin1', 0, nul)] = data.toString('latin1', nul + 1);
    } else if (type === 'iTXt' && nul > 0 && data[nul + 1] === 0) {
      const languageEnd = data.indexOf(0, nul + 3);
      const translatedEnd = languageEnd >= 0 ? data.indexOf(0, languageEnd + 1) : -1;
      if (translatedEnd >= 0) texts[data.toString('latin1', 0, nul)] = data.toString('utf8', translatedEnd + 1);
    }
    offset += 12 + length;
  }
  return texts;
}
