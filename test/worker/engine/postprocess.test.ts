import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decoderOutputToRgb, decoderValueToUint8, roundHalfToEven } from '../../../services/worker/engine/postprocess.ts';

describe('postprocess', () => {
  it('rounds half to even like numpy', () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, 254.5, 2.4999, 2.5001].map(roundHalfToEven), [0, 2, 2, 4, 254, 2, 3]);
  });

  it('maps decoder values through clamp(x*0.5+0.5)*255 in float32', () => {
    assert.equal(decoderValueToUint8(-1), 0);
    assert.equal(decoderValueToUint8(1), 255);
    assert.equal(decoderValueToUint8(-7), 0);
    assert.equal(decoderValueToUint8(7), 255);
    assert.equal(decoderValueToUint8(Number.NaN), 0);
    // x = 1/255 - 1 gives exactly 0.5/255*255... pick a value whose float32 product is an exact .5:
    // unit = 2.5/255 -> unit*255 rounds (float32) to 2.5 -> half-to-even 2, Math.round would give 3.
    const x = Math.fround((2.5 / 255 - 0.5) * 2);
    const unit = Math.fround(Math.fround(x * 0.5) + 0.5);
    const level = Math.fround(unit * 255);
    assert.equal(decoderValueToUint8(x), roundHalfToEven(level));
  });

  it('converts NCHW batch output to HWC RGB for the requested image', () => {
    // batch of 2, 1x2 pixels: image 1 has R=1, G=-1, B=0
    const decoded = new Float32Array([0, 0, 0, 0, 0, 0, 1, 1, -1, -1, 0, 0]);
    assert.deepEqual(Array.from(decoderOutputToRgb(decoded, 1, 1, 2)), [255, 0, 128, 255, 0, 128]);
  });
});
