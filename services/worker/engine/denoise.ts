/** The Euler loop of FlowMatchEulerDiscreteScheduler over the transformer, and the VAE decode after it. */
import type { Tensor } from 'onnxruntime-node';
import { EngineError } from './errors.ts';
import { assertFinite } from './finite.ts';
import { imagePositionIds, textPositionIds, unpackLatents } from './latents.ts';
import { geometryOf, type LoadedModel } from './model-loader.ts';
import { floatTensor, integerValuedTensor, readFloatTensor, type TensorSpec } from './onnx-session.ts';
import { chunk, padRows, type StageTimer } from './passes.ts';
import { decoderOutputToRgb } from './postprocess.ts';
import { flowMatchSchedule } from './schedule.ts';
import type { PromptEncoding } from './text-encoding.ts';

const f32 = Math.fround;

export interface DenoiseInput {
  /** Packed initial latents of all images, [batchSize, (H/2)(W/2), 4C] flattened. Not modified. */
  latents: Float32Array;
  batchSize: number;
  /** Pixel size of every image in this pass. */
  width: number;
  height: number;
  steps: number;
  /** Guidance scale per image (length batchSize). Ignored by models without a guidance input. */
  guidance: readonly number[];
  /** Text conditioning with exactly batchSize rows. */
  prompts: PromptEncoding;
  /**
   * True classifier-free guidance: the negative prompt's conditioning (batchSize rows) and one scale
   * for the pass. The transformer runs on both at every step; v = neg + scale * (cond - neg), as
   * diffusers' FluxPipeline does for true_cfg_scale > 1.
   */
  trueCfg?: { negative: PromptEncoding; scale: number };
  /** Called after each Euler step with the transformer output (velocity) and the updated latents. */
  onStep?: (step: number, velocity: Float32Array, latents: Float32Array) => void;
}

/** Position ids as the model declares them: [N, 3], or [B, N, 3] repeated per image. */
function positionIdsTensor(spec: TensorSpec, ids: Float32Array, rows: number, batch: number): Tensor {
  if (spec.shape.length === 3) {
    const repeated = new Float32Array(ids.length * batch);
    for (let b = 0; b < batch; b++) repeated.set(ids, b * ids.length);
    return integerValuedTensor(spec, repeated, [batch, rows, 3]);
  }
  return integerValuedTensor(spec, ids, [rows, 3]);
}

export async function denoise(model: LoadedModel, input: DenoiseInput, timed: StageTimer): Promise<Float32Array> {
  const t = model.transformer;
  const geometry = geometryOf(model, input.width, input.height);
  const batch = input.batchSize;
  const target = t.fixedBatch ?? batch;
  const perImage = geometry.sequenceLength * geometry.packedChannels;
  if (input.latents.length !== perImage * batch) {
    throw new EngineError(
      'BAD_REQUEST',
      `latents have ${input.latents.length} values, expected ${perImage * batch} for ${batch} images of ${input.width}x${input.height}`,
    );
  }
  if (input.prompts.batchSize !== batch || input.guidance.length !== batch) {
    throw new EngineError(
      'BAD_REQUEST',
      `denoise: ${batch} latents but ${input.prompts.batchSize} prompts and ${input.guidance.length} guidance values`,
    );
  }
  if (input.trueCfg && input.trueCfg.negative.batchSize !== batch) {
    throw new EngineError('BAD_REQUEST', `denoise: ${batch} latents but ${input.trueCfg.negative.batchSize} negative prompts`);
  }
  const schedule = flowMatchSchedule(model.scheduler, input.steps, geometry.sequenceLength);

  // Conditioning is the same at every step: build those tensors once.
  const conditioning = (prompts: PromptEncoding): Record<string, Tensor> => {
    const { textLength, textHiddenSize, pooledSize } = prompts;
    const feeds: Record<string, Tensor> = {
      [t.encoderHiddenStates.name]: floatTensor(t.encoderHiddenStates, padRows(prompts.textHidden, batch, target), [
        target,
        textLength,
        textHiddenSize,
      ]),
      [t.pooledProjections.name]: floatTensor(t.pooledProjections, padRows(prompts.pooled, batch, target), [target, pooledSize]),
      [t.imgIds.name]: positionIdsTensor(t.imgIds, imagePositionIds(geometry), geometry.sequenceLength, target),
      [t.txtIds.name]: positionIdsTensor(t.txtIds, textPositionIds(textLength), textLength, target),
    };
    if (t.guidance) {
      feeds[t.guidance.name] = floatTensor(t.guidance, padRows(Float32Array.from(input.guidance), batch, target), [target]);
    }
    return feeds;
  };
  const positive = conditioning(input.prompts);
  const negative = input.trueCfg ? conditioning(input.trueCfg.negative) : undefined;

  const velocityOf = async (constantFeeds: Record<string, Tensor>, latents: Float32Array, step: number, label: string) => {
    const timestep = new Float32Array(target).fill(f32(schedule.timesteps[step]!));
    const feeds: Record<string, Tensor> = {
      ...constantFeeds,
      [t.hiddenStates.name]: floatTensor(t.hiddenStates, padRows(latents, batch, target), [
        target,
        geometry.sequenceLength,
        geometry.packedChannels,
      ]),
      [t.timestep.name]: floatTensor(t.timestep, timestep, [target]),
    };
    const outputs = await timed(
      'transformer',
      batch,
      () => t.session.run(feeds, [t.output.name], `transformer step ${step}${label}`),
      step,
    );
    const velocity = readFloatTensor(outputs[t.output.name]!, t.session.file);
    if (velocity.length < latents.length) {
      throw new EngineError(
        'MODEL_UNSUPPORTED',
        `${t.session.file}: output has ${velocity.length} values, expected ${latents.length * (target / batch)}`,
      );
    }
    assertFinite(
      velocity.subarray(0, latents.length),
      `transformer step ${step + 1} of ${input.steps}${label}`,
      t.session.file,
      model.float16.transformer,
    );
    return velocity;
  };

  let latents = Float32Array.from(input.latents);
  for (let step = 0; step < input.steps; step++) {
    const velocity = await velocityOf(positive, latents, step, '');
    if (negative) {
      // FluxPipeline: noise_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred), float32.
      const neg = await velocityOf(negative, latents, step, ' (negative prompt)');
      const scale = f32(input.trueCfg!.scale);
      for (let i = 0; i < latents.length; i++) velocity[i] = f32(neg[i]! + f32(scale * f32(velocity[i]! - neg[i]!)));
    }
    // FlowMatchEulerDiscreteScheduler.step: prev = sample + (sigma_next - sigma) * v, all float32.
    const dt = f32(schedule.sigmas[step + 1]! - schedule.sigmas[step]!);
    const next = new Float32Array(latents.length);
    for (let i = 0; i < latents.length; i++) next[i] = latents[i]! + f32(dt * velocity[i]!);
    latents = next;
    input.onStep?.(step, velocity.subarray(0, latents.length), latents);
  }
  return latents;
}

/** Decodes packed latents of `batchSize` images of one size to RGB uint8 HWC images. */
export async function decode(
  model: LoadedModel,
  latents: Float32Array,
  batchSize: number,
  width: number,
  height: number,
  timed: StageTimer,
): Promise<Uint8Array[]> {
  const vae = model.vae;
  const geometry = geometryOf(model, width, height);
  const perImage = geometry.sequenceLength * geometry.packedChannels;
  if (latents.length !== perImage * batchSize) {
    throw new EngineError('BAD_REQUEST', `decode: latents have ${latents.length} values, expected ${perImage * batchSize}`);
  }
  const scaling = f32(model.files.vae.scalingFactor);
  const shift = f32(model.files.vae.shiftFactor);
  const images: Uint8Array[] = [];
  const rows = Array.from({ length: batchSize }, (_, i) => i);
  for (const pass of chunk(rows, model.info.maxBatchSize)) {
    const batch = pass.length;
    const target = vae.fixedBatch ?? batch;
    const z = new Float32Array(perImage * batch);
    pass.forEach((row, i) => {
      const unpacked = unpackLatents(latents.subarray(row * perImage, (row + 1) * perImage), geometry);
      for (let k = 0; k < unpacked.length; k++) unpacked[k] = f32(f32(unpacked[k]! / scaling) + shift);
      z.set(unpacked, i * perImage);
    });
    const feeds = {
      [vae.latent.name]: floatTensor(vae.latent, padRows(z, batch, target), [target, geometry.channels, geometry.height, geometry.width]),
    };
    const outputs = await timed('vae', batch, () => vae.session.run(feeds, [vae.output.name], 'VAE decoder'));
    const output = outputs[vae.output.name]!;
    const [, channels, outHeight, outWidth] = output.dims;
    if (channels !== 3 || outHeight !== height || outWidth !== width) {
      throw new EngineError(
        'MODEL_UNSUPPORTED',
        `${vae.session.file}: decoded to [${output.dims.join(', ')}], expected [${target}, 3, ${height}, ${width}]`,
      );
    }
    const decoded = readFloatTensor(output, vae.session.file);
    assertFinite(decoded.subarray(0, batch * 3 * height * width), 'VAE decoder', vae.session.file, model.float16.vae);
    await timed('postprocess', batch, async () => {
      for (let i = 0; i < batch; i++) images.push(decoderOutputToRgb(decoded, i, height, width));
    });
  }
  return images;
}
