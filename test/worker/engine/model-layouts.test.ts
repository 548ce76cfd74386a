/**
 * Layout adaptability on synthetic "echo" models (helpers/echo-model.ts): the engine must read
 * names, element types and ranks from the sessions and produce the same, closed-form images for
 * optimum names or aliases, 2-D or 3-D ids, int64/int32/float ids, fp32 or fp16 I/O, and a fixed
 * export batch (padded passes).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FluxPipeline } from '../../../services/worker/engine/flux-pipeline.ts';
import { float16BitsToFloat32, float32ToFloat16Bits } from '../../../services/worker/engine/float16.ts';
import { latentGeometry, unpackLatents } from '../../../services/worker/engine/latents.ts';
import { decoderOutputToRgb } from '../../../services/worker/engine/postprocess.ts';
import { ECHO_VAE, echoModelDir } from './helpers/echo-model.ts';
import type { EchoModelOptions } from './helpers/echo-model.ts';
import { tinyModelAvailable } from './helpers/reference.ts';

const skip = tinyModelAvailable() ? false : 'models/tiny-flux (tokenizers) missing';
const f32 = Math.fround;

/** The echo model's image in closed form: v = x each step, VAE = identity. */
function expectedImage(pipeline: FluxPipeline, seed: number, width: number, height: number, steps: number, fp16: boolean): Uint8Array {
  const half = (v: number): number => (fp16 ? float16BitsToFloat32(float32ToFloat16Bits(v)) : v);
  let x = pipeline.initialLatents(seed, width, height);
  const { sigmas } = pipeline.schedule(width, height, steps);
  for (let i = 0; i < steps; i++) {
    const dt = f32(sigmas[i + 1]! - sigmas[i]!);
    x = x.map((v) => v + f32(dt * half(v)));
  }
  const geometry = latentGeometry(width, height, 1, 3);
  const z = unpackLatents(x, geometry).map((v) => half(f32(f32(v / f32(ECHO_VAE.scalingFactor)) + f32(ECHO_VAE.shiftFactor))));
  return decoderOutputToRgb(z, 0, height, width);
}

const layouts: Array<[string, EchoModelOptions]> = [
  ['optimum names, 2-D int64 ids, fp32', {}],
  ['3-D float ids', { idsRank: 3, idsType: 'float' }],
  ['2-D int32 ids, int32 token ids', { idsType: 'int32', tokenIdsType: 'int32' }],
  ['fp16 transformer and VAE I/O, fp16 ids', { floatType: 'float16', idsType: 'float16' }],
  ['BFL-style aliased names', { aliasNames: true }],
  ['fixed export batch of 2 (padded passes)', { fixedBatch: 2, idsRank: 3 }],
  ['no guidance input (schnell-like)', { guidance: false }],
];

describe('model layouts (synthetic echo models)', { skip }, () => {
  for (const [name, options] of layouts) {
    it(name, async (t) => {
      const pipeline = new FluxPipeline({ modelDirectory: await echoModelDir(t, options), maxBatchSize: 4 });
      await pipeline.load();
      t.after(() => pipeline.close());
      assert.equal(pipeline.info.maxBatchSize, options.fixedBatch ?? 4);
      assert.equal(pipeline.info.usesGuidance, options.guidance !== false);
      assert.equal(pipeline.info.sizeMultiple, 2);
      const requests = [
        { prompt: 'one', seed: 1 },
        { prompt: 'two', seed: 2, width: 4, height: 10, steps: 2 },
        { prompt: 'three', seed: 3 },
        { prompt: 'four', seed: 4 },
        { prompt: 'five', seed: 5, guidance: 7 },
      ];
      const images = await pipeline.generate(requests);
      requests.forEach((request, i) => {
        const width = request.width ?? 8;
        const height = request.height ?? 6;
        const steps = request.steps ?? 3;
        assert.equal(images[i]!.width, width);
        assert.equal(images[i]!.height, height);
        assert.deepEqual(
          images[i]!.data,
          expectedImage(pipeline, request.seed, width, height, steps, options.floatType === 'float16'),
          `request ${i}`,
        );
      });
      const encoding = await pipeline.encodePrompts(['one']);
      assert.equal(encoding.textLength, 16);
      assert.equal(encoding.pooledSize, 77);
      // T5 echo: hidden state = token id.
      assert.deepEqual(Array.from(encoding.textHidden), encoding.t5Ids[0]);
    });
  }
});
