/**
 * True classifier-free guidance against diffusers' FluxPipeline(true_cfg_scale=s, negative_prompt="")
 * in PyTorch, on the bundled demo model (references written by tools/flux_train/reference.py from the
 * trained weights): final packed latents within relative L2 1e-4 and images within 1 level, for a
 * plain run (scale 1) and a guided one. The guided case fails if the negative prompt, the combination
 * formula or its scale is wrong; the plain case shows that scale 1 is exactly the unguided pipeline.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FluxPipeline } from '../../../services/worker/engine/flux-pipeline.ts';
import { PACKAGE_ROOT_FOR_TESTS } from './helpers/paths.ts';
import { maxAbsDiff, relativeL2 } from './helpers/reference.ts';

const DIR = join(PACKAGE_ROOT_FOR_TESTS, 'test', 'fixtures', 'flux-shapes-reference');

interface CfgCase {
  name: string;
  prompt: string;
  seed: number;
  true_cfg_scale: number;
  width: number;
  height: number;
  steps: number;
  max_sequence_length: number;
}

const manifest = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8')) as { model: string; cases: CfgCase[] };
const modelDir = join(PACKAGE_ROOT_FOR_TESTS, manifest.model);

function float32(file: string): Float32Array {
  const bytes = readFileSync(join(DIR, file));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
}

describe('true CFG matches diffusers FluxPipeline', { skip: existsSync(modelDir) ? false : `${modelDir} missing` }, () => {
  let pipeline: FluxPipeline;
  before(async () => {
    pipeline = new FluxPipeline({ modelDirectory: modelDir, provider: 'cpu' });
    await pipeline.load();
  });
  after(() => pipeline?.close());

  it('covers a guided case and a plain one', () => {
    assert.ok(manifest.cases.some((c) => c.true_cfg_scale > 1));
    assert.ok(manifest.cases.some((c) => c.true_cfg_scale === 1));
  });

  for (const c of manifest.cases) {
    it(`${c.name}: "${c.prompt}" at true_cfg_scale ${c.true_cfg_scale}`, async () => {
      const initial = float32(`${c.name}.initial_latents.f32`);
      const request = { prompt: c.prompt, seed: c.seed, width: c.width, height: c.height, steps: c.steps, trueCfgScale: c.true_cfg_scale };
      const encoding = await pipeline.encodePrompts([c.prompt], { maxSequenceLength: c.max_sequence_length });
      const negative = await pipeline.encodePrompts([''], { maxSequenceLength: c.max_sequence_length });
      const final = await pipeline.denoise({
        latents: initial,
        batchSize: 1,
        width: c.width,
        height: c.height,
        steps: c.steps,
        guidance: [0],
        prompts: encoding,
        ...(c.true_cfg_scale > 1 ? { trueCfg: { negative, scale: c.true_cfg_scale } } : {}),
      });
      const latentError = relativeL2(final, float32(`${c.name}.final_latents.f32`));
      assert.ok(latentError < 1e-4, `final latents differ from diffusers: relative L2 ${latentError}`);

      const [image] = await pipeline.generate([request], { initialLatents: [initial] });
      const expected = new Uint8Array(readFileSync(join(DIR, `${c.name}.image.u8`)));
      const levels = maxAbsDiff(image!.data, expected);
      assert.ok(levels <= 1, `image differs from diffusers by up to ${levels} levels`);
      if (c.true_cfg_scale > 1) assert.equal(image!.trueCfgScale, c.true_cfg_scale);
      else assert.equal(image!.trueCfgScale, undefined);
    });
  }
});
