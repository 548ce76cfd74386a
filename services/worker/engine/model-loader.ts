/**
 * Loading a FLUX model: the preflight first (every file checked, all problems reported at once, before
 * any session exists), then one session per component, bound to the roles the pipeline needs, and
 * the defaults, schedule and batch limits the engine runs with.
 */
import { bindClipEncoder, bindT5Encoder, bindTransformer, bindVaeDecoder } from './components.ts';
import type { TextEncoderBinding, TransformerBinding, VaeDecoderBinding } from './components.ts';
import { EngineError } from './errors.ts';
import { latentGeometry, type LatentGeometry } from './latents.ts';
import { FLUX_DEV_DEFAULTS, FLUX_SCHNELL_DEFAULTS, readFluxModelFiles, type FluxModelFiles } from './model-files.ts';
import type { ModelSession, SessionSettings } from './onnx-session.ts';
import type { ResolvedPipelineOptions } from './options.ts';
import { preflightError, preflightModel } from './preflight.ts';
import { DEFAULT_SCHEDULER_CONFIG, FLUX_DEV_SCHEDULER_CONFIG, type FlowMatchSchedulerConfig } from './schedule.ts';
import { loadPromptTokenizer, type PromptTokenizer } from './tokenizer.ts';
import type { EngineInfo, ModelDefaults } from './types.ts';

export { FLUX_DEV_DEFAULTS, FLUX_SCHNELL_DEFAULTS } from './model-files.ts';

export interface LoadedModel {
  files: FluxModelFiles;
  /** The model's scheduler config, or FLUX.1-dev's / schnell's by guidance input when the export has none. */
  scheduler: FlowMatchSchedulerConfig;
  clipTokenizer: PromptTokenizer;
  t5Tokenizers: Map<number, Promise<PromptTokenizer>>;
  clip: TextEncoderBinding;
  t5: TextEncoderBinding;
  transformer: TransformerBinding;
  vae: VaeDecoderBinding;
  sessions: ModelSession[];
  latentChannels: number;
  /** Components whose float I/O is float16 (for the non-finite guard's hint). */
  float16: { clip: boolean; t5: boolean; transformer: boolean; vae: boolean };
  info: EngineInfo;
}

export async function loadFluxModel(options: ResolvedPipelineOptions): Promise<LoadedModel> {
  const report = await preflightModel(options.modelDirectory, { provider: options.provider });
  if (!report.ok) throw preflightError(report);
  for (const warning of report.issues) options.logger.warn({ file: warning.file, fix: warning.fix }, warning.problem);

  const files = await readFluxModelFiles(options.modelDirectory);
  const settings: SessionSettings = {
    provider: options.provider,
    allowCpuFallback: options.allowCpuFallback,
    graphOptimizationLevel: options.graphOptimizationLevel,
    intraOpNumThreads: options.intraOpNumThreads,
    intraOpSpinning: options.intraOpSpinning,
    deviceId: options.deviceId,
    tensorrtFp16: options.tensorrtFp16,
    tensorrtCacheDirectory: options.tensorrtCacheDirectory,
    logger: options.logger,
  };
  const sessions: ModelSession[] = [];
  try {
    const open = async (file: string): Promise<ModelSession> => {
      const session = await options.openSession(file, settings);
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
    // Never schnell's schedule for a guidance-distilled (dev) model: its sigmas would be wrong.
    const scheduler = files.scheduler ?? (transformer.guidance ? FLUX_DEV_SCHEDULER_CONFIG : DEFAULT_SCHEDULER_CONFIG);
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
    const maxBatchSize = fixedBatches.length > 0 ? Math.min(...fixedBatches) : options.maxBatchSize;
    const info: EngineInfo = Object.freeze({
      model: files.name,
      modelDirectory: files.directory,
      defaults: Object.freeze(defaults),
      provider: sessions.some((s) => s.provider === 'cpu') ? 'cpu' : options.provider,
      usesGuidance: transformer.guidance !== undefined,
      sizeMultiple: files.vae.scaleFactor * 2,
      maxBatchSize,
      preferredBatchSize: Math.min(options.preferredBatchSize, maxBatchSize),
    });
    const float16 = {
      clip: clip.output.type === 'float16',
      t5: t5.output.type === 'float16',
      transformer: transformer.output.type === 'float16',
      vae: vae.output.type === 'float16' || vae.latent.type === 'float16',
    };
    return {
      files,
      scheduler,
      clipTokenizer,
      t5Tokenizers: new Map(),
      clip,
      t5,
      transformer,
      vae,
      sessions,
      latentChannels,
      float16,
      info,
    };
  } catch (error) {
    await Promise.allSettled(sessions.map((session) => session.release()));
    throw error;
  }
}

/** Latent geometry of one image size, or BAD_REQUEST when the size is not a multiple the model takes. */
export function geometryOf(model: LoadedModel, width: number, height: number): LatentGeometry {
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

/** The T5 tokenizer for one sequence length (built once per length). */
export function t5TokenizerOf(model: LoadedModel, length: number): Promise<PromptTokenizer> {
  let tokenizer = model.t5Tokenizers.get(length);
  if (!tokenizer) {
    tokenizer = loadPromptTokenizer({ directory: model.files.t5TokenizerDirectory, maxLength: length });
    tokenizer.catch(() => model.t5Tokenizers.delete(length));
    model.t5Tokenizers.set(length, tokenizer);
  }
  return tokenizer;
}
