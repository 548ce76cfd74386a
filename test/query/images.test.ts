import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { test } from 'node:test';
import sharp from 'sharp';
import { metadataFromTexts, readPngTextChunks } from '../../services/query/images.ts';
import { fixturePng } from './helpers/fixture-jobs.ts';

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)) >>> 0, 8 + data.length);
  return out;
}

test("reads the worker's t2i-stream iTXt JSON (UTF-8 prompt) from a real PNG", async () => {
  const png = await fixturePng(
    1,
    0,
    { prompt: 'café ☕ at dawn', seed: 42, width: 16, height: 16, steps: 4, guidance: 3.5, model: 'tiny-flux' },
    16,
  );
  assert.equal((await sharp(png).metadata()).width, 16, 'still a valid PNG');
  const texts = readPngTextChunks(png);
  assert.deepEqual(metadataFromTexts(texts), {
    prompt: 'café ☕ at dawn',
    seed: 42,
    width: 16,
    height: 16,
    steps: 4,
    guidance: 3.5,
    model: 'tiny-flux',
  });
  // Only the head of the file is read: a truncated PNG still gives its text chunks.
  assert.deepEqual(readPngTextChunks(png.subarray(0, 33 + 12 + Buffer.byteLength(texts['t2i-stream'] as string) + 15)), texts);
});

test('per-field tEXt chunks (prompt, seed, size "WxH", …) are read too; non-PNG gives nothing', async () => {
  const base = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#336699' } })
    .png()
    .toBuffer();
  const headerEnd = 8 + 25;
  const texts = [
    ['prompt', 'a tEXt prompt'],
    ['Seed', '7'],
    ['size', '512x768'],
    ['steps', '20'],
    ['guidance', 'n/a'],
  ].map(([k, v]) => chunk('tEXt', Buffer.from(`${k}\0${v}`, 'latin1')));
  const png = Buffer.concat([base.subarray(0, headerEnd), ...texts, base.subarray(headerEnd)]);
  assert.deepEqual(metadataFromTexts(readPngTextChunks(png)), { prompt: 'a tEXt prompt', seed: 7, steps: 20, width: 512, height: 768 });
  assert.deepEqual(readPngTextChunks(Buffer.from('not a png at all')), {});
});
