/**
 * FLUX exports as the real tools write them (test/fixtures/exporters, built by
 * tools/flux_export/build_fixtures.py from a tiny diffusers pipeline): optimum-onnx fp32 (CLIP as
 * vocab.json + merges.txt, T5 as spiece.model), onnxruntime's optimize_pipeline --float16, and an fp16
 * transformer that overflows. Token ids must equal HuggingFace's, images diffusers' FluxPipeline.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { EngineError } from '../../../services/worker/engine/errors.ts';
import { FluxPipeline } from '../../../services/worker/engine/flux-pipeline.ts';
import { preflightModel } from '../../../services/worker/engine/preflight.ts';
import { PACKAGE_ROOT_FOR_TESTS } from './helpers/paths.ts';
import { maxAbsDiff, splitRows } from './helpers/reference.ts';

const FIXTURES = join(PACKAGE_ROOT_FOR_TESTS, 'test', 'fixtures', 'exporters');
const OPTIMUM = join(FIXTURES, 'optimum-fp32');
const ORT_FP16 = join(FIXTURES, 'ort-fp16');
const OVERFLOW = join(FIXTURES, 'fp16-overflow');

interface ExportReference {
  prompts: string[];
  width: number;
  height: number;
  steps: number;
  guidance: number;
  max_sequence_length: number;
  clip_input_ids: number[][];
  t5_input_ids: number[][];
  initial_latents: { file: string; shape: number[] };
  image: { file: string; shape: number[] };
}

const refDir = join(OPTIMUM, '_reference');
const reference = JSON.parse(readFileSync(join(refDir, 'reference.json'), 'utf8')) as ExportReference;
const latents = (() => {
  const b = readFileSync(join(refDir, reference.initial_latents.file));
  return splitRows(new Float32Array(b.buffer, b.byteOffset, b.length / 4), reference.prompts.length);
})();
const expectedImage = new Uint8Array(readFileSync(join(refDir, reference.image.file)));

async function render(modelDirectory: string): Promise<Uint8Array> {
  const pipeline = new FluxPipeline({ modelDirectory, graphOptimizationLevel: 'basic' });
  await pipeline.load();
  try {
    const requests = reference.prompts.map((prompt) => ({
      prompt,
      seed: 0,
      width: reference.width,
      height: reference.height,
      steps: reference.steps,
      guidance: reference.guidance,
    }));
    const images = await pipeline.generate(requests, { initialLatents: latents, maxSequenceLength: reference.max_sequence_length });
    const out = new Uint8Array(images.reduce((n, i) => n + i.data.length, 0));
    let offset = 0;
    for (const image of images) {
      out.set(image.data, offset);
      offset += image.data.length;
    }
    return out;
  } finally {
    await pipeline.close();
  }
}

describe('exports made by the real exporters', () => {
  it('optimum-onnx fp32: tokenizers from vocab.json + merges.txt and spiece.model give HuggingFace’s ids', async () => {
    const pipeline = new FluxPipeline({ modelDirectory: OPTIMUM });
    await pipeline.load();
    try {
      const encoding = await pipeline.encodePrompts(reference.prompts, { maxSequenceLength: reference.max_sequence_length });
      assert.deepEqual(encoding.clipIds, reference.clip_input_ids, 'CLIP ids (vocab.json + merges.txt)');
      assert.deepEqual(encoding.t5Ids, reference.t5_input_ids, 'T5 ids (spiece.model)');
    } finally {
      await pipeline.close();
    }
  });

  it('optimum-onnx fp32: images within 1 level of diffusers’ FluxPipeline', async () => {
    const diff = maxAbsDiff(await render(OPTIMUM), expectedImage);
    assert.ok(diff <= 1, `max uint8 difference ${diff}`);
  });

  it('onnxruntime optimize_pipeline --float16: T5’s RelativePositionBias and the VAE’s GroupNorm/NhwcConv have no CPU kernel, and the check says so', async () => {
    const report = await preflightModel(ORT_FP16, { provider: 'cpu' });
    assert.equal(report.ok, false);
    const problems = report.issues.filter((i) => i.severity === 'error');
    assert.deepEqual(
      problems.map((p) => p.file.split('/').slice(-2).join('/')),
      ['text_encoder_2/model.onnx', 'vae_decoder/model.onnx'],
    );
    assert.match(problems[0]!.problem, /CUDA only: com\.microsoft:RelativePositionBias/);
    assert.match(problems[1]!.problem, /CUDA only: .*GroupNorm/);
    assert.equal((await preflightModel(ORT_FP16, { provider: 'cuda' })).ok, true, 'fine on a GPU');
  });

  it('onnxruntime optimize_pipeline --float16: its CLIP encoder and transformer run on CPU, within fp16 tolerance', async () => {
    // The fp16 components that do run on CPU, with the fp32 T5 and VAE of the optimum export.
    const dir = await mkdtemp(join(tmpdir(), 't2i-ort-fp16-'));
    after(() => rm(dir, { recursive: true, force: true }));
    await cp(ORT_FP16, dir, { recursive: true });
    for (const folder of ['text_encoder_2', 'vae_decoder']) {
      await rm(join(dir, folder), { recursive: true });
      await cp(join(OPTIMUM, folder), join(dir, folder), { recursive: true });
    }
    const image = await render(dir);
    const diff = maxAbsDiff(image, expectedImage);
    const mean = image.reduce((sum, v, i) => sum + Math.abs(v - expectedImage[i]!), 0) / image.length;
    // fp16 weights and activations over 3 steps of the loud tiny transformer, against the PyTorch fp32
    // reference: measured max 16 levels, mean 3.8 (models/tiny-flux-fp16 measures up to 8 against its fp32 twin).
    assert.ok(diff <= 24 && mean <= 6, `max uint8 difference ${diff}, mean ${mean.toFixed(2)} vs the fp32 reference`);
  });

  it('an fp16 transformer that overflows: the batch fails at the first step, naming the stage and the fp16 fix (never a black PNG)', async () => {
    const pipeline = new FluxPipeline({ modelDirectory: OVERFLOW });
    await pipeline.load();
    try {
      await assert.rejects(
        pipeline.generate([{ prompt: reference.prompts[0]!, seed: 1, width: 64, height: 48, steps: 3 }]),
        (error: unknown) => {
          assert.ok(error instanceof EngineError);
          assert.equal(error.code, 'NON_FINITE');
          assert.match(error.message, /transformer step 1 of 3 produced \d+ non-finite values .*float16/);
          return true;
        },
      );
    } finally {
      await pipeline.close();
    }
  });
});
