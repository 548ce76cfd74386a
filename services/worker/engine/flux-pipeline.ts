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
 * (width, height, steps, true CFG scale) and denoises each group in passes of up to maxBatchSize images, with
 * per-image guidance and per-image seeds, so batching never changes an image. The stages live in
 * model-loader.ts (preflight, sessions), text-encoding.ts and denoise.ts (Euler loop, VAE decode).
 */
import { performance } from 'node:perf_hooks';
import { decode, denoise, type DenoiseInput } from './denoise.ts';
import { EngineError } from './errors.ts';
import { packLatents } from './latents.ts';
import { geometryOf, loadFluxModel, type LoadedModel } from './model-loader.ts';
import { assertValidSeed, gaussianNoise } from './noise.ts';
import { resolvePipelineOptions } from './options.ts';
import type { FluxPipelineOptions, ResolvedPipelineOptions } from './options.ts';
import { chunk, type StageTimer } from './passes.ts';
import { flowMatchSchedule } from './schedule.ts';
import type { FlowMatchSchedule } from './schedule.ts';
import { encodePrompts, selectRows, type EncodePromptsOptions, type PromptEncoding } from './text-encoding.ts';
import type { EngineInfo, GenerateRequest, GeneratedImage, ImageEngine } from './types.ts';

export { FLUX_DEV_DEFAULTS, FLUX_SCHNELL_DEFAULTS } from './model-loader.ts';
export type { DenoiseInput } from './denoise.ts';
export type { EncodePromptsOptions, PromptEncoding, PromptTruncation } from './text-encoding.ts';

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
  trueCfgScale: number;
}

type PipelineState = 'created' | 'loading' | 'ready' | 'closing' | 'closed';

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
      this.loading = loadFluxModel(this.options).then(
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
    return this.exclusive(() => encodePrompts(this.requireModel(), prompts, options, this.timed));
  }

  /** Runs the Euler loop on given packed latents; returns the final packed latents. */
  denoise(input: DenoiseInput): Promise<Float32Array> {
    return this.exclusive(() => denoise(this.requireModel(), input, this.timed));
  }

  /** Decodes packed latents of `batchSize` images of one size to RGB uint8 HWC images. */
  decode(latents: Float32Array, batchSize: number, width: number, height: number): Promise<Uint8Array[]> {
    return this.exclusive(() => decode(this.requireModel(), latents, batchSize, width, height, this.timed));
  }

  /** Sigmas and transformer timesteps for one image size and step count. */
  schedule(width: number, height: number, steps: number): FlowMatchSchedule {
    const model = this.requireModel();
    return flowMatchSchedule(model.scheduler, steps, geometryOf(model, width, height).sequenceLength);
  }

  /** Seeded initial packed latents for one image (see noise.ts for the generator). */
  initialLatents(seed: number, width: number, height: number): Float32Array {
    const geometry = geometryOf(this.requireModel(), width, height);
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

  private readonly timed: StageTimer = (stage, batchSize, work, step) => {
    const hook = this.options.onStageTiming;
    if (!hook) return work();
    const started = performance.now();
    return work().then((result) => {
      hook({ stage, batchSize, durationMs: performance.now() - started, ...(step !== undefined ? { step } : {}) });
      return result;
    });
  };

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
      trueCfgScale: request.trueCfgScale ?? defaults.trueCfgScale,
    };
    if (!Number.isInteger(resolved.steps) || resolved.steps < 1 || resolved.steps > 1000) {
      throw new EngineError('BAD_REQUEST', `request ${index}: steps must be an integer in 1..1000, got ${resolved.steps}`);
    }
    if (!Number.isFinite(resolved.guidance)) {
      throw new EngineError('BAD_REQUEST', `request ${index}: guidance must be a finite number, got ${resolved.guidance}`);
    }
    if (!Number.isFinite(resolved.trueCfgScale) || resolved.trueCfgScale < 1) {
      throw new EngineError(
        'BAD_REQUEST',
        `request ${index}: trueCfgScale must be a number >= 1 (1 turns it off), got ${resolved.trueCfgScale}`,
      );
    }
    geometryOf(this.requireModel(), resolved.width, resolved.height);
    return resolved;
  }

  private async generateNow(requests: readonly GenerateRequest[], options: GenerateOptions): Promise<GeneratedImage[]> {
    const model = this.requireModel();
    const resolved = requests.map((request, index) => this.resolveRequest(request, index));
    if (resolved.length === 0) return [];
    const encoding = await encodePrompts(
      model,
      resolved.map((request) => request.prompt),
      options.maxSequenceLength !== undefined ? { maxSequenceLength: options.maxSequenceLength } : {},
      this.timed,
    );
    // True CFG's negative prompt is empty (FluxPipeline with negative_prompt ""): encoded once per call.
    const negative = resolved.some((request) => request.trueCfgScale > 1)
      ? await encodePrompts(model, [''], { maxSequenceLength: encoding.textLength }, this.timed)
      : undefined;

    const groups = new Map<string, ResolvedRequest[]>();
    for (const request of resolved) {
      const key = `${request.width}x${request.height}x${request.steps}x${request.trueCfgScale}`;
      const group = groups.get(key);
      if (group) group.push(request);
      else groups.set(key, [request]);
    }

    const results: GeneratedImage[] = new Array(resolved.length);
    for (const group of groups.values()) {
      for (const pass of chunk(group, model.info.maxBatchSize)) {
        const { width, height, steps, trueCfgScale } = pass[0]!;
        const geometry = geometryOf(model, width, height);
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
        const final = await denoise(
          model,
          {
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
            ...(negative && trueCfgScale > 1
              ? {
                  trueCfg: {
                    negative: selectRows(
                      negative,
                      pass.map(() => 0),
                    ),
                    scale: trueCfgScale,
                  },
                }
              : {}),
          },
          this.timed,
        );
        const images = await decode(model, final, pass.length, width, height, this.timed);
        pass.forEach((request, i) => {
          const truncation = encoding.truncation[request.index];
          results[request.index] = {
            width,
            height,
            data: images[i]!,
            seed: request.seed,
            steps,
            guidance: request.guidance,
            ...(trueCfgScale > 1 ? { trueCfgScale } : {}),
            model: model.info.model,
            ...(truncation ? { truncation } : {}),
          };
        });
      }
    }
    return results;
  }
}

/** Factory form, for callers that pass dependencies as options objects. */
export function createFluxPipeline(options: FluxPipelineOptions): FluxPipeline {
  return new FluxPipeline(options);
}
