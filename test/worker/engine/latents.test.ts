import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { imagePositionIds, latentGeometry, packLatents, textPositionIds, unpackLatents } from '../../../services/worker/engine/latents.ts';

describe('latent packing', () => {
  it('derives the geometry like diffusers (2 * (size // (vae*2)))', () => {
    const g = latentGeometry(1024, 768, 8, 16);
    assert.deepEqual(g, { channels: 16, height: 96, width: 128, sequenceLength: 48 * 64, packedChannels: 64 });
  });

  it('places latent[c][2i+p][2j+q] at packed[i*(W/2)+j][c*4+p*2+q]', () => {
    const g = latentGeometry(64, 32, 8, 2); // C=2, H=4, W=8
    const latent = new Float32Array(2 * 4 * 8).map((_, k) => k);
    const packed = packLatents(latent, g);
    for (let c = 0; c < 2; c++)
      for (let y = 0; y < 4; y++)
        for (let x = 0; x < 8; x++) {
          const i = y >> 1,
            p = y & 1,
            j = x >> 1,
            q = x & 1;
          assert.equal(packed[(i * 4 + j) * 8 + c * 4 + p * 2 + q], latent[(c * 4 + y) * 8 + x]);
        }
  });

  it('round-trips pack -> unpack', () => {
    const g = latentGeometry(96, 48, 8, 16);
    const latent = new Float32Array(16 * g.height * g.width).map(() => Math.random());
    assert.deepEqual(unpackLatents(packLatents(latent, g), g), latent);
  });

  it('builds image ids [0, i, j] row-major and zero text ids', () => {
    const g = latentGeometry(48, 32, 8, 16); // 2 x 3 tokens
    assert.deepEqual(Array.from(imagePositionIds(g)), [0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 1, 0, 1, 2]);
    assert.deepEqual(Array.from(textPositionIds(2)), [0, 0, 0, 0, 0, 0]);
  });
});
