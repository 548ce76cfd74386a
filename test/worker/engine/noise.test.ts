import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GaussianNoise, gaussianNoise } from '../../../services/worker/engine/noise.ts';
import { EngineError } from '../../../services/worker/engine/errors.ts';

describe('seeded Gaussian noise', () => {
  it("implements xoshiro128** (outputs of the authors' C code from state 1,2,3,4)", () => {
    const rng = GaussianNoise.fromState([1, 2, 3, 4]);
    const outputs = Array.from({ length: 6 }, () => rng.nextUint32());
    assert.deepEqual(outputs, [11520, 0, 5927040, 70819200, 2031721883, 1637235492]);
  });

  it('is deterministic per seed and differs between seeds', () => {
    assert.deepEqual(gaussianNoise(42, 1000), gaussianNoise(42, 1000));
    assert.notDeepEqual(gaussianNoise(42, 16), gaussianNoise(43, 16));
    // Prefix property: a longer draw starts with the shorter one.
    assert.deepEqual(gaussianNoise(7, 2000).subarray(0, 999), gaussianNoise(7, 999));
    // Large seeds are distinct (splitmix64 consumes all 53 bits).
    assert.notDeepEqual(gaussianNoise(2 ** 52, 8), gaussianNoise(2 ** 52 + 1, 8));
  });

  it('has roughly N(0,1) moments', () => {
    const n = 200_000;
    const x = gaussianNoise(1234, n);
    let sum = 0,
      sumSq = 0,
      sum4 = 0,
      within1 = 0;
    for (const v of x) {
      sum += v;
      sumSq += v * v;
      sum4 += v ** 4;
      if (Math.abs(v) < 1) within1++;
    }
    const mean = sum / n;
    const variance = sumSq / n - mean * mean;
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.015, `variance ${variance}`);
    assert.ok(Math.abs(sum4 / n - 3) < 0.1, `kurtosis ${sum4 / n}`);
    assert.ok(Math.abs(within1 / n - 0.6827) < 0.005, `P(|x|<1) ${within1 / n}`);
  });

  it('rejects seeds that are not non-negative safe integers', () => {
    for (const seed of [-1, 1.5, 2 ** 53, Number.NaN]) {
      assert.throws(
        () => gaussianNoise(seed, 1),
        (e: unknown) => e instanceof EngineError && e.code === 'BAD_REQUEST',
      );
    }
  });
});
