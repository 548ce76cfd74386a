import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { crc32, encodePng, readPngMetadata, readPngText, METADATA_KEYWORD } from '../../../services/worker/engine/png.ts';

const META = { prompt: 'a café at dusk, 夕暮れ "quoted"', seed: 12345, steps: 4, guidance: 3.5, width: 4, height: 2, model: 'tiny-flux' };

function image(): { width: number; height: number; data: Uint8Array } {
  return { width: 4, height: 2, data: Uint8Array.from({ length: 24 }, (_, i) => (i * 37) % 256) };
}

describe('PNG encoding', () => {
  it('computes the standard CRC-32', () => {
    assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
    // Every length around the 8-byte blocks, against the bit-by-bit definition.
    const bitwise = (bytes: Uint8Array) => {
      let c = 0xffffffff;
      for (const byte of bytes) {
        c ^= byte;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      }
      return (c ^ 0xffffffff) >>> 0;
    };
    for (let length = 0; length < 40; length++) {
      const bytes = Uint8Array.from({ length }, (_, i) => (i * 193 + length * 7) & 255);
      assert.equal(crc32(bytes), bitwise(bytes), `length ${length}`);
    }
  });

  it('round-trips the metadata text chunk, including non-Latin-1 prompts', async () => {
    const png = await encodePng(image(), META);
    assert.deepEqual(readPngMetadata(png), META);
    assert.equal(Object.keys(readPngText(png)).includes(METADATA_KEYWORD), true);
  });

  it('carries an AUTOMATIC1111-style `parameters` text that an independent reader (libspng via sharp) sees', async () => {
    const ascii = { ...META, prompt: 'a red fox in snow' };
    const comments = (await sharp(await encodePng(image(), ascii)).metadata()).comments ?? [];
    const parameters = comments.find((c) => c.keyword === 'parameters')?.text;
    assert.ok(parameters, `no parameters chunk in ${JSON.stringify(comments)}`);
    const [prompt, settings] = parameters.split('\n');
    assert.equal(prompt, ascii.prompt);
    const pairs = Object.fromEntries(settings!.split(', ').map((kv) => kv.split(': ') as [string, string]));
    assert.equal(pairs.Steps, String(ascii.steps));
    assert.equal(pairs.Seed, String(ascii.seed));
    assert.equal(pairs.Size, `${ascii.width}x${ascii.height}`);
    assert.equal(pairs['Distilled CFG Scale'], String(ascii.guidance));
    assert.equal(pairs.Model, ascii.model);
    // Non-ASCII prompts go into an iTXt chunk (UTF-8), as PIL writes them.
    assert.equal(readPngText(await encodePng(image(), META)).parameters?.split('\n')[0], META.prompt);
  });

  it('keeps the pixels and produces a PNG sharp and libpng accept', async () => {
    const png = await encodePng(image(), META);
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(info.width, 4);
    assert.equal(info.height, 2);
    assert.equal(info.channels, 3);
    assert.deepEqual(new Uint8Array(data), image().data);
  });

  it('keeps the pixels of a large image too (deflated off the event loop)', async () => {
    const width = 320;
    const height = 240;
    const data = Uint8Array.from(
      { length: width * height * 3 },
      (_, i) => ((i % 3) * 80 + Math.floor(i / (width * 3)) + ((i * 2654435761) >>> 29)) & 255,
    );
    const png = await encodePng({ width, height, data }, { ...META, width, height });
    const decoded = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.equal(decoded.info.width, width);
    assert.equal(decoded.info.height, height);
    assert.deepEqual(new Uint8Array(decoded.data), data);
    assert.deepEqual(readPngMetadata(png), { ...META, width, height });
  });

  it('is byte-deterministic and changes with the metadata', async () => {
    const a = await encodePng(image(), META);
    const b = await encodePng(image(), META);
    const c = await encodePng(image(), { ...META, seed: 1 });
    assert.ok(a.equals(b));
    assert.ok(!a.equals(c));
  });

  it('rejects data of the wrong size and non-PNG input', async () => {
    await assert.rejects(encodePng({ width: 4, height: 4, data: new Uint8Array(3) }, META), /expected 4x4x3/);
    assert.throws(() => readPngText(Buffer.from('not a png')), /not a PNG/);
  });
});
