/**
 * FLUX.1 text-to-image on onnxruntime-node, following diffusers' FluxPipeline step for step
 * (see docs in schedule.ts, latents.ts, postprocess.ts for the exact formulas).
 *
 *   prompts -> CLIP tokenizer -> text_encoder -> pooler_output  ------------------> pooled_projections
 *           -> T5 tokenizer   -> text_encoder_2 -> last_hidden_state -------------> encoder_hidden_states
 *   seed -> N(0,1) [C,H,W] -> pack 2x2 -> N Euler steps of the transformer -> unpack
 *        -> / scaling_factor + shift_factor -> vae_decoder -> clamp(x/2+0.5) -> uint8 RGB
 *
 * A generate() call encodes all prompts in batched passes, then groups requests by
 * (width, height, steps) and denoises each group in passes of up to maxBatchSize images, with
 * per-image guidance and per-image seeds, so batching never changes an image.
 */
import { performance } from 'node:perf_hooks';
import type { Tensor } from 'onnxruntime-node';
import { bindClipEncoder, bindT5Encoder, bindTransformer, bindVaeDecoder } from './components.ts';
import type { TextEncoderBinding, TransformerBinding, VaeDecoderBinding } from './components.ts';
import { EngineError } from './errors.ts';
import { imagePositionIds, latentGeometry, packLatents, textPositionIds, unpackLatents } from './latents.ts';
import type { LatentGeometry } from './latents.ts';
import { readFluxModelFiles } from './model-files.ts';
import type { FluxModelFiles } from './model-files.ts';
import { assertValidSeed, gaussianNoise } from './noise.ts';
import { floatTensor, integerValuedTensor, openModelSession, readFloatTensor } from './onnx-session.ts';
import type { ModelSession, SessionSettings, TensorSpec } from './onnx-session.ts';
import { resolvePipelineOptions } from './options.ts';
import type { FluxPipelineOptions, ResolvedPipelineOptions } from './options.ts';
import { decoderOutputToRgb } from './postprocess.ts';
import { flowMatchSchedule } from './schedule.ts';
import type { FlowMatchSchedule } from './schedule.ts';
import { loadPromptTokenizer } from './tokenizer.ts';
import type { PromptTokenizer } from './tokenizer.ts';
import type { EngineInfo, GenerateRequest, GeneratedImage, ImageEngine, ModelDefaults, PipelineStage } from './types.ts';

const f32 = Math.fround;

/** diffusers FluxPipeline defaults (FLUX.1-dev), used where t2i.json is silent. */
export const FLUX_DEV_DEFAULTS: Readonly<ModelDefaults> = Object.freeze({
  width: 1024,
  height: 1024,
  steps: 28,
  guidance: 3.5,
  maxSequenceLength: 512,
});
/** FLUX.1-schnell defaults, for models without a guidance input. */
export const FLUX_SCHNELL_DEFAULTS: Readonly<ModelDefaults> = Object.freeze({
  width: 1024,
  height: 1024,
  steps: 4,
  guidance: 0,
  maxSequenceLength: 256,
});

/** Text conditioning for a batch of prompts, row i belonging to prompt i. */
export interface PromptEncoding {
  batchSize: number;
  clipIds: number[][];
  t5Ids: number[][];
  /** CLIP pooler_output, [batchSize, pooledSize]. */
  pooled: Float32Array;
  pooledSize: number;
  /** T5 last_hidden_state, [batchSize, textLength, textHiddenSize]. */
  textHidden: Float32Array;
  textLength: number;
  textHiddenSize: number;
}

export interface EncodePromptsOptions {
  /** T5 length in tokens. Default: the model's default (t2i.json max_sequence_length, else 512). */
  maxSequenceLength?: number;
}

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
  /** Called after each Euler step with the transformer output (velocity) and the updated latents. */
  onStep?: (step: number, velocity: Float32Array, latents: Float32Array) => void;
}

export interface GenerateOptions {
  /**
   * Packed initial latents per request ([(H/2)(W/2), 4C] float32), replacing the seeded noise
   * (parity tests feed the reference's torch noise). undefined entries use the seed.
   */
  initialLatents?: ReadonlyArray<Float32Array | undefined>;
  /** T5 length in tokens for this call. Default: the model's default. */
  maxSequenceLength?: number;
}

interface ResolvedRequest {
  index: number;
  prompt: string;
  seed: number;
  width: number;
  height: number;
  steps: number;
  guidance: number;
}

interface LoadedModel {
  files: FluxModelFiles;
  clipTokenizer: PromptTokenizer;
  t5Tokenizers: Map<number, Promise<PromptTokenizer>>;
  clip: TextEncoderBinding;
  t5: TextEncoderBinding;
  transformer: TransformerBinding;
  vae: VaeDecoderBinding;
  sessions: ModelSession[];
  latentChannels: number;
  info: EngineInfo;
}

type PipelineState = 'created' | 'loading' | 'ready' | 'closing' | 'closed';

function chunk<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/**
 * Repeats the last row until the batch reaches `target` rows, for exports with a fixed batch
 * dimension; the extra outputs are dropped by the caller.
 */
function padRows(data: Float32Array, rows: number, target: number): Float32Array {
  if (rows >= target) return data;
  const rowSize = data.length / rows;
  const padded = new Float32Array(rowSize * target);
  padded.set(data);
  for (let r = rows; r < target; r++) padded.copyWithin(r * rowSize, (rows - 1) * rowSize, rows * rowSize);
  return padded;
}

function selectRows(encoding: PromptEncoding, rows: readonly number[]): PromptEncoding {
  const pooled = new Float32Array(rows.length * encoding.pooledSize);
  const textRow = encoding.textLength * encoding.textHiddenSize;
  const textHidden = new Float32Array(rows.length * textRow);
  rows.forEach((row, i) => {
    pooled.set(encoding.pooled.subarray(row * encoding.pooledSize, (row + 1) * encoding.pooledSize), i * encoding.pooledSize);
    textHidden.set(encoding.textHidden.subarray(row * textRow, (row + 1) * textRow), i * textRow);
  });
  return {
    batchSize: rows.length,
    clipIds: rows.map((row) => encoding.clipIds[row]!),
    t5Ids: rows.map((row) => encoding.t5Ids[row]!),
    pooled,
    pooledSize: encoding.pooledSize,
    textHidden,
    textLength: encoding.textLength,
    textHiddenSize: encoding.textHiddenSize,
  };
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

export class FluxPipeline implements ImageEngine {
  private readonly options: ResolvedPipelineOptions;
  private state: PipelineState = 'created';
  private loading: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private model: LoadedModel | undefined;
  // Runs are serialized: concurrent passes would only fight over the same cores or GPU memory.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: FluxPipelineOptions) {
    this.options = resolvePipelineOptions(options);
  }

  getState(): PipelineState {
    return this.state;
  }

  /** Model name, defaults, provider and batch hints. Throws NOT_LOADED before load() resolves. */
  get info(): EngineInfo {
    return this.requireModel().info;
  }

  /** Reads and checks the model directory and creates all sessions. Calling it again returns the same promise. */
  load(): Promise<void> {
    if (this.state === 'closing' || this.state === 'closed') {
      return Promise.reject(new EngineError('NOT_LOADED', 'FluxPipeline is closed'));
    }
    if (!this.loading) {
      this.state = 'loading';
      this.loading = this.loadModel().then(
        (model) => {
          this.model = model;
          this.state = 'ready';
        },
        (error: unknown) => {
          // Forget the failed attempt so a later load() (e.g. after fixing the files) retries.
          this.loading = undefined;
          this.state = 'created';
          throw error;
        },
      );
    }
    return this.loading;
  }

  /** Releases the sessions. Idempotent: later calls return the same promise. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closing';
      try {
        await this.loading;
      } catch {
        // A failed load has nothing to release.
      }
      await this.queue.catch(() => undefined);
      for (const session of this.model?.sessions ?? []) {
        try {
          await session.release();
        } catch (error) {
          this.options.logger.warn({ file: session.file, err: (error as Error).message }, 'failed to release onnxruntime session');
        }
      }
      this.model = undefined;
      this.state = 'closed';
    })();
    return this.closing;
  }

  generate(requests: readonly GenerateRequest[], options: GenerateOptions = {}): Promise<GeneratedImage[]> {
    return this.exclusive(() => this.generateNow(requests, options));
  }

  /** Tokenizes and runs both text encoders (in passes of up to maxBatchSize prompts). */
  encodePrompts(prompts: readonly string[], options: EncodePromptsOptions = {}): Promise<PromptEncoding> {
    return this.exclusive(() => this.encodePromptsNow(prompts, options));
  }

  /** Runs the Euler loop on given packed latents; returns the final packed latents. */
  denoise(input: DenoiseInput): Promise<Float32Array> {
    return this.exclusive(() => this.denoiseNow(input));
  }

  /** Decodes packed latents of `batchSize` images of one size to RGB uint8 HWC images. */
  decode(latents: Float32Array, batchSize: number, width: number, height: number): Promise<Uint8Array[]> {
    return this.exclusive(() => this.decodeNow(latents, batchSize, width, height));
  }

  /** Sigmas and transformer timesteps for one image size and step count. */
  schedule(width: number, height: number, steps: number): FlowMatchSchedule {
    const model = this.requireModel();
    const geometry = this.geometry(width, height);
    return flowMatchSchedule(model.files.scheduler, steps, geometry.sequenceLength, {
      muOffset: this.options.distortions.scheduleMuOffset ?? 0,
    });
  }

  /** Seeded initial packed latents for one image (see noise.ts for the generator). */
  initialLatents(seed: number, width: number, height: number): Float32Array {
    const geometry = this.geometry(width, height);
    const noise = gaussianNoise(seed, geometry.channels * geometry.height * geometry.width);
    return packLatents(noise, geometry);
  }

  private exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      // A call made while load() is in flight waits for it instead of failing.
      if (this.state === 'loading') await this.loading;
      if (this.state !== 'ready') throw new EngineError('NOT_LOADED', `FluxPipeline is ${this.state}; call load() first`);
      return task();
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  private requireModel(): LoadedModel {
    if (!this.model) throw new EngineError('NOT_LOADED', `FluxPipeline is ${this.state}; call load() first`);
    return this.model;
  }

  private geometry(width: number, height: number): LatentGeometry {
    const model = this.requireModel();
    const multiple = model.info.sizeMultiple;
    for (const [name, value] of [
      ['width', width],
      ['height', height],
    ] as const) {
      if (!Number.isInteger(value) || value < multiple || value % multiple !== 0) {
        throw new EngineError('BAD_REQUEST', `${name} must be a positive multiple of ${multiple}, got ${value}`);
      }
    }
    return latentGeometry(width, height, model.files.vae.scaleFactor, model.latentChannels);
  }

  private timed<T>(stage: PipelineStage, batchSize: number, work: () => Promise<T>, step?: number): Promise<T> {
    const hook = this.options.onStageTiming;
    if (!hook) return work();
    const started = performance.now();
    return work().then((result) => {
      hook({ stage, batchSize, durationMs: performance.now() - started, ...(step !== undefined ? { step } : {}) });
      return result;
    });
  }

  private async loadModel(): Promise<LoadedModel> {
    const files = await readFluxModelFiles(this.options.modelDirectory);
    const settings: SessionSettings = {
      provider: this.options.provider,
      allowCpuFallback: this.options.allowCpuFallback,
      graphOptimizationLevel: this.options.graphOptimizationLevel,
      intraOpNumThreads: this.options.intraOpNumThreads,
      deviceId: this.options.deviceId,
      logger: this.options.logger,
    };
    const sessions: ModelSession[] = [];
    try {
      const open = async (file: string): Promise<ModelSession> => {
        const session = await openModelSession(file, settings);
        sessions.push(session);
        return session;
      };
      const clip = bindClipEncoder(await open(files.onnx.textEncoder));
      const t5 = bindT5Encoder(await open(files.onnx.textEncoder2));
      const transformer = bindTransformer(await open(files.onnx.transformer));
      const vae = bindVaeDecoder(await open(files.onnx.vaeDecoder));
      const clipTokenizer = await loadPromptTokenizer({
        directory: files.clipTokenizerDirectory,
        ...(clip.fixedLength !== undefined ? { maxLength: clip.fixedLength } : {}),
      });

      const base = transformer.guidance ? FLUX_DEV_DEFAULTS : FLUX_SCHNELL_DEFAULTS;
      const defaults: ModelDefaults = { ...base, ...files.declaredDefaults };
      if (t5.fixedLength !== undefined) defaults.maxSequenceLength = t5.fixedLength;
      const latentChannels =
        files.transformerInChannels !== undefined
          ? files.transformerInChannels / 4
          : transformer.packedChannels !== undefined
            ? transformer.packedChannels / 4
            : (vae.channels ?? 16);
      if (!Number.isInteger(latentChannels)) {
        throw new EngineError('MODEL_UNSUPPORTED', `${files.onnx.transformer}: in_channels must be a multiple of 4`);
      }
      if (vae.channels !== undefined && vae.channels !== latentChannels) {
        throw new EngineError(
          'MODEL_UNSUPPORTED',
          `${files.onnx.vaeDecoder}: takes ${vae.channels} latent channels but the transformer produces ${latentChannels}`,
        );
      }
      const fixedBatches = [clip.fixedBatch, t5.fixedBatch, transformer.fixedBatch, vae.fixedBatch].filter(
        (b): b is number => b !== undefined,
      );
      // With a fixed export batch, passes are exactly that size (padded), so that is the capacity.
      const maxBatchSize = fixedBatches.length > 0 ? Math.min(...fixedBatches) : this.options.maxBatchSize;
      const info: EngineInfo = Object.freeze({
        model: files.name,
        modelDirectory: files.directory,
        defaults: Object.freeze(defaults),
        provider: sessions.some((s) => s.provider === 'cpu') ? 'cpu' : this.options.provider,
        usesGuidance: transformer.guidance !== undefined,
        sizeMultiple: files.vae.scaleFactor * 2,
        maxBatchSize,
        preferredBatchSize: Math.min(this.options.preferredBatchSize, maxBatchSize),
      });
      return {
        files,
        clipTokenizer,
        t5Tokenizers: new Map(),
        clip,
        t5,
        transformer,
        vae,
        sessions,
        latentChannels,
        info,
      };
    } catch (error) {
      await Promise.allSettled(sessions.map((session) => session.release()));
      throw error;
    }
  }

  private t5Tokenizer(model: LoadedModel, length: number): Promise<PromptTokenizer> {
    let tokenizer = model.t5Tokenizers.get(length);
    if (!tokenizer) {
      tokenizer = loadPromptTokenizer({ directory: model.files.t5TokenizerDirectory, maxLength: length });
      tokenizer.catch(() => model.t5Tokenizers.delete(length));
      model.t5Tokenizers.set(length, tokenizer);
    }
    return tokenizer;
  }

  private resolveRequest(request: GenerateRequest, index: number): ResolvedRequest {
    const defaults = this.requireModel().info.defaults;
    if (typeof request.prompt !== 'string') throw new EngineError('BAD_REQUEST', `request ${index}: prompt must be a string`);
    assertValidSeed(request.seed);
    const resolved: ResolvedRequest = {
      index,
      prompt: request.prompt,
      seed: request.seed,
      width: request.width ?? defaults.width,
      height: request.height ?? defaults.height,
      steps: request.steps ?? defaults.steps,
      guidance: request.guidance ?? defaults.guidance,
    };
    if (!Number.isInteger(resolved.steps) || resolved.steps < 1 || resolved.steps > 1000) {
      throw new EngineError('BAD_REQUEST', `request ${index}: steps must be an integer in 1..1000, got ${resolved.steps}`);
    }
    if (!Number.isFinite(resolved.guidance)) {
      throw new EngineError('BAD_REQUEST', `request ${index}: guidance must be a finite number, got ${resolved.guidance}`);
    }
    this.geometry(resolved.width, resolved.height);
    return resolved;
  }

  private async generateNow(requests: readonly GenerateRequest[], options: GenerateOptions): Promise<GeneratedImage[]> {
    const model = this.requireModel();
    const resolved = requests.map((request, index) => this.resolveRequest(request, index));
    if (resolved.length === 0) return [];
    const encoding = await this.encodePromptsNow(
      resolved.map((request) => request.prompt),
      options.maxSequenceLength !== undefined ? { maxSequenceLength: options.maxSequenceLength } : {},
    );

    const groups = new Map<string, ResolvedRequest[]>();
    for (const request of resolved) {
      const key = `${request.width}x${request.height}x${request.steps}`;
      const group = groups.get(key);
      if (group) group.push(request);
      else groups.set(key, [request]);
    }

    const results: GeneratedImage[] = new Array(resolved.length);
    for (const group of groups.values()) {
      for (const pass of chunk(group, model.info.maxBatchSize)) {
        const { width, height, steps } = pass[0]!;
        const geometry = this.geometry(width, height);
        const tokensPerImage = geometry.sequenceLength * geometry.packedChannels;
        const latents = new Float32Array(tokensPerImage * pass.length);
        pass.forEach((request, i) => {
          const given = options.initialLatents?.[request.index];
          if (given !== undefined && given.length !== tokensPerImage) {
            throw new EngineError(
              'BAD_REQUEST',
              `request ${request.index}: initialLatents has ${given.length} values, expected ${tokensPerImage}`,
            );
          }
          latents.set(given ?? this.initialLatents(request.seed, width, height), i * tokensPerImage);
        });
        const final = await this.denoiseNow({
          latents,
          batchSize: pass.length,
          width,
          height,
          steps,
          guidance: pass.map((request) => request.guidance),
          prompts: selectRows(
            encoding,
            pass.map((request) => request.index),
          ),
        });
        const images = await this.decodeNow(final, pass.length, width, height);
        pass.forEach((request, i) => {
          results[request.index] = {
            width,
            height,
            data: images[i]!,
            seed: request.seed,
            steps,
            guidance: request.guidance,
            model: model.info.model,
          };
        });
      }
    }
    return results;
  }

  private async encodePromptsNow(prompts: readonly string[], options: EncodePromptsOptions): Promise<PromptEncoding> {
    const model = this.requireModel();
    let textLength = options.maxSequenceLength ?? model.info.defaults.maxSequenceLength;
    if (model.t5.fixedLength !== undefined && textLength !== model.t5.fixedLength) {
      throw new EngineError(
        'BAD_REQUEST',
        `${model.t5.session.file} has a fixed sequence length of ${model.t5.fixedLength}; cannot encode ${textLength} tokens`,
      );
    }
    // diffusers' FluxPipeline.check_inputs rejects > 512 too: FLUX was trained with at most 512 T5 tokens.
    if (!Number.isInteger(textLength) || textLength < 2 || textLength > 512) {
      throw new EngineError('BAD_REQUEST', `maxSequenceLength must be an integer in 2..512, got ${textLength}`);
    }
    const t5Tokenizer = await this.t5Tokenizer(model, textLength);
    const [clipIds, t5Ids] = await this.timed('tokenize', prompts.length, () =>
      Promise.all([model.clipTokenizer.encode(prompts), t5Tokenizer.encode(prompts)]),
    );
    textLength = t5Tokenizer.maxLength;

    const pooledParts: Float32Array[] = [];
    const hiddenParts: Float32Array[] = [];
    let pooledSize = 0;
    let textHiddenSize = 0;
    const rows = prompts.map((_, i) => i);
    for (const pass of chunk(rows, model.info.maxBatchSize)) {
      const pooled = await this.runTextEncoder(
        model.clip,
        'clip',
        pass.map((i) => clipIds[i]!),
      );
      const hidden = await this.runTextEncoder(
        model.t5,
        't5',
        pass.map((i) => t5Ids[i]!),
      );
      pooledSize = pooled.data.length / pass.length;
      textHiddenSize = hidden.data.length / (pass.length * textLength);
      pooledParts.push(pooled.data);
      hiddenParts.push(hidden.data);
    }
    const concat = (parts: Float32Array[]): Float32Array => {
      const out = new Float32Array(parts.reduce((sum, part) => sum + part.length, 0));
      let offset = 0;
      for (const part of parts) {
        out.set(part, offset);
        offset += part.length;
      }
      return out;
    };
    return {
      batchSize: prompts.length,
      clipIds,
      t5Ids,
      pooled: concat(pooledParts),
      pooledSize,
      textHidden: concat(hiddenParts),
      textLength,
      textHiddenSize,
    };
  }

  private async runTextEncoder(binding: TextEncoderBinding, stage: 'clip' | 't5', ids: number[][]): Promise<{ data: Float32Array }> {
    const batch = ids.length;
    const length = ids[0]!.length;
    const target = binding.fixedBatch ?? batch;
    const flat = new Float32Array(batch * length);
    ids.forEach((row, i) => flat.set(row, i * length));
    const input = integerValuedTensor(binding.inputIds, padRows(flat, batch, target), [target, length]);
    const outputs = await this.timed(stage, batch, () =>
      binding.session.run(
        { [binding.inputIds.name]: input },
        [binding.output.name],
        stage === 'clip' ? 'CLIP text encoder' : 'T5 text encoder',
      ),
    );
    const data = readFloatTensor(outputs[binding.output.name]!, binding.session.file);
    return { data: data.subarray(0, (data.length / target) * batch) };
  }

  private async denoiseNow(input: DenoiseInput): Promise<Float32Array> {
    const model = this.requireModel();
    const t = model.transformer;
    const distortions = this.options.distortions;
    const geometry = this.geometry(input.width, input.height);
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
    const schedule = flowMatchSchedule(model.files.scheduler, input.steps, geometry.sequenceLength, {
      muOffset: distortions.scheduleMuOffset ?? 0,
    });
    const { textLength, textHiddenSize, pooledSize } = input.prompts;

    // Conditioning is the same at every step: build those tensors once.
    const constantFeeds: Record<string, Tensor> = {
      [t.encoderHiddenStates.name]: floatTensor(t.encoderHiddenStates, padRows(input.prompts.textHidden, batch, target), [
        target,
        textLength,
        textHiddenSize,
      ]),
      [t.pooledProjections.name]: floatTensor(t.pooledProjections, padRows(input.prompts.pooled, batch, target), [target, pooledSize]),
      [t.imgIds.name]: positionIdsTensor(
        t.imgIds,
        imagePositionIds(geometry, distortions.swapImageIdAxes ?? false),
        geometry.sequenceLength,
        target,
      ),
      [t.txtIds.name]: positionIdsTensor(t.txtIds, textPositionIds(textLength), textLength, target),
    };
    if (t.guidance) {
      const guidance = Float32Array.from(input.guidance, (g) => (distortions.zeroGuidance ? 0 : g));
      constantFeeds[t.guidance.name] = floatTensor(t.guidance, padRows(guidance, batch, target), [target]);
    }

    const timestepMultiplier = distortions.timestepMultiplier ?? 1;
    let latents = Float32Array.from(input.latents);
    for (let step = 0; step < input.steps; step++) {
      const timestep = new Float32Array(target).fill(f32(schedule.timesteps[step]! * timestepMultiplier));
      const feeds: Record<string, Tensor> = {
        ...constantFeeds,
        [t.hiddenStates.name]: floatTensor(t.hiddenStates, padRows(latents, batch, target), [
          target,
          geometry.sequenceLength,
          geometry.packedChannels,
        ]),
        [t.timestep.name]: floatTensor(t.timestep, timestep, [target]),
      };
      const outputs = await this.timed('transformer', batch, () => t.session.run(feeds, [t.output.name], `transformer step ${step}`), step);
      const velocity = readFloatTensor(outputs[t.output.name]!, t.session.file);
      if (velocity.length < latents.length) {
        throw new EngineError(
          'MODEL_UNSUPPORTED',
          `${t.session.file}: output has ${velocity.length} values, expected ${latents.length * (target / batch)}`,
        );
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

  private async decodeNow(latents: Float32Array, batchSize: number, width: number, height: number): Promise<Uint8Array[]> {
    const model = this.requireModel();
    const vae = model.vae;
    const geometry = this.geometry(width, height);
    const perImage = geometry.sequenceLength * geometry.packedChannels;
    if (latents.length !== perImage * batchSize) {
      throw new EngineError('BAD_REQUEST', `decode: latents have ${latents.length} values, expected ${perImage * batchSize}`);
    }
    const scaling = f32(model.files.vae.scalingFactor);
    const shift = f32(model.files.vae.shiftFactor + (this.options.distortions.vaeShiftOffset ?? 0));
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
      const outputs = await this.timed('vae', batch, () => vae.session.run(feeds, [vae.output.name], 'VAE decoder'));
      const output = outputs[vae.output.name]!;
      const [, channels, outHeight, outWidth] = output.dims;
      if (channels !== 3 || outHeight !== height || outWidth !== width) {
        throw new EngineError(
          'MODEL_UNSUPPORTED',
          `${vae.session.file}: decoded to [${output.dims.join(', ')}], expected [${target}, 3, ${height}, ${width}]`,
        );
      }
      const decoded = readFloatTensor(output, vae.session.file);
      await this.timed('postprocess', batch, async () => {
        for (let i = 0; i < batch; i++) images.push(decoderOutputToRgb(decoded, i, height, width));
      });
    }
    return images;
  }
}

/** Factory form, for callers that pass dependencies as options objects. */
export function createFluxPipeline(options: FluxPipelineOptions): FluxPipeline {
  return new FluxPipeline(options);
}
