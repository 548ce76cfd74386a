/**
 * The on-disk layout of a FLUX model in optimum's ONNX export layout, plus this project's t2i.json
 * (model defaults). Everything is read and checked up front so a broken model directory fails at
 * load() with a message naming the file, not halfway through the first batch.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { EngineError } from './errors.ts';
import { parseSchedulerConfig } from './schedule.ts';
import type { FlowMatchSchedulerConfig } from './schedule.ts';
import type { ModelDefaults } from './types.ts';

export const COMPONENT_FOLDERS = {
  textEncoder: 'text_encoder',
  textEncoder2: 'text_encoder_2',
  transformer: 'transformer',
  vaeDecoder: 'vae_decoder',
} as const;
export type ComponentName = keyof typeof COMPONENT_FOLDERS;

export interface VaeSettings {
  /** latents / scalingFactor before decoding. FLUX: 0.3611. */
  scalingFactor: number;
  /** Added after scaling. FLUX: 0.1159; 0 when the config has none. */
  shiftFactor: number;
  /** 2^(len(block_out_channels) - 1); 8 for FLUX. */
  scaleFactor: number;
}

export interface FluxModelFiles {
  directory: string;
  /** t2i.json `name`, else the directory name. */
  name: string;
  /** Values from t2i.json; missing ones are filled once the transformer's inputs are known. */
  declaredDefaults: Partial<ModelDefaults>;
  /** scheduler/scheduler_config.json; undefined when the export has none (the pipeline then picks by guidance input). */
  scheduler: FlowMatchSchedulerConfig | undefined;
  vae: VaeSettings;
  /** transformer/config.json in_channels, if present (latent channels = in_channels / 4). */
  transformerInChannels: number | undefined;
  onnx: Record<ComponentName, string>;
  clipTokenizerDirectory: string;
  t5TokenizerDirectory: string;
}

export async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new EngineError('MODEL_NOT_FOUND', `${file}: cannot read (${(error as Error).message})`, { cause: error });
  }
  try {
    const value = JSON.parse(text) as unknown;
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (error) {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: invalid JSON (${(error as Error).message})`, { cause: error });
  }
}

async function requireDirectory(path: string, what: string): Promise<void> {
  try {
    if ((await stat(path)).isDirectory()) return;
  } catch (error) {
    throw new EngineError('MODEL_NOT_FOUND', `${path}: ${what} not found`, { cause: error });
  }
  throw new EngineError('MODEL_NOT_FOUND', `${path}: ${what} is not a directory`);
}

/** diffusers FluxPipeline defaults (FLUX.1-dev), used where t2i.json is silent. */
export const FLUX_DEV_DEFAULTS: Readonly<ModelDefaults> = Object.freeze({
  width: 1024,
  height: 1024,
  steps: 28,
  guidance: 3.5,
  trueCfgScale: 1,
  maxSequenceLength: 512,
});
/** FLUX.1-schnell defaults, for models without a guidance input. */
export const FLUX_SCHNELL_DEFAULTS: Readonly<ModelDefaults> = Object.freeze({
  width: 1024,
  height: 1024,
  steps: 4,
  guidance: 0,
  trueCfgScale: 1,
  maxSequenceLength: 256,
});

function positiveNumber(value: unknown, file: string, key: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new EngineError('MODEL_UNSUPPORTED', `${file}: ${key} must be a positive number, got ${JSON.stringify(value)}`);
  }
  return value;
}

export function readDeclaredDefaults(raw: Record<string, unknown> | undefined, file: string): Partial<ModelDefaults> & { name?: string } {
  if (!raw) return {};
  const defaults: Partial<ModelDefaults> & { name?: string } = {};
  const width = positiveNumber(raw['width'], file, 'width');
  const height = positiveNumber(raw['height'], file, 'height');
  const steps = positiveNumber(raw['steps'] ?? raw['num_inference_steps'], file, 'steps');
  const maxSequenceLength = positiveNumber(raw['max_sequence_length'], file, 'max_sequence_length');
  const guidance = raw['guidance'] ?? raw['guidance_scale'];
  const trueCfgScale = positiveNumber(raw['true_cfg_scale'], file, 'true_cfg_scale');
  if (width !== undefined) defaults.width = width;
  if (height !== undefined) defaults.height = height;
  if (steps !== undefined) defaults.steps = steps;
  if (maxSequenceLength !== undefined) defaults.maxSequenceLength = maxSequenceLength;
  if (trueCfgScale !== undefined) defaults.trueCfgScale = trueCfgScale;
  if (typeof guidance === 'number' && Number.isFinite(guidance)) defaults.guidance = guidance;
  if (typeof raw['name'] === 'string' && raw['name'].length > 0) defaults.name = raw['name'];
  return defaults;
}

export async function readVaeSettings(directory: string): Promise<VaeSettings> {
  // optimum writes the VAE config next to the decoder; a diffusers folder keeps it under vae/.
  const candidates = [join(directory, 'vae_decoder', 'config.json'), join(directory, 'vae', 'config.json')];
  for (const file of candidates) {
    const raw = await readJson(file, false);
    if (!raw) continue;
    const scalingFactor = positiveNumber(raw['scaling_factor'], file, 'scaling_factor');
    if (scalingFactor === undefined) {
      throw new EngineError('MODEL_UNSUPPORTED', `${file}: scaling_factor is missing`);
    }
    const shift = raw['shift_factor'];
    const blocks = raw['block_out_channels'];
    if (!Array.isArray(blocks) || blocks.length === 0) {
      throw new EngineError('MODEL_UNSUPPORTED', `${file}: block_out_channels is missing`);
    }
    return {
      scalingFactor,
      shiftFactor: typeof shift === 'number' ? shift : 0,
      scaleFactor: 2 ** (blocks.length - 1),
    };
  }
  throw new EngineError(
    'MODEL_NOT_FOUND',
    `${candidates[0]}: VAE config not found (need scaling_factor, shift_factor, block_out_channels)`,
  );
}

export async function readFluxModelFiles(modelDirectory: string): Promise<FluxModelFiles> {
  const directory = resolve(modelDirectory);
  await requireDirectory(directory, 'model directory');
  const onnx = {} as Record<ComponentName, string>;
  for (const [component, folder] of Object.entries(COMPONENT_FOLDERS) as Array<[ComponentName, string]>) {
    await requireDirectory(join(directory, folder), `model component ${folder}`);
    onnx[component] = join(directory, folder, 'model.onnx');
  }
  const clipTokenizerDirectory = join(directory, 'tokenizer');
  const t5TokenizerDirectory = join(directory, 'tokenizer_2');
  await requireDirectory(clipTokenizerDirectory, 'CLIP tokenizer folder');
  await requireDirectory(t5TokenizerDirectory, 'T5 tokenizer folder');

  const t2iFile = join(directory, 't2i.json');
  const declared = readDeclaredDefaults(await readJson(t2iFile, false), t2iFile);
  const { name, ...declaredDefaults } = declared;

  const schedulerFile = join(directory, 'scheduler', 'scheduler_config.json');
  const schedulerRaw = await readJson(schedulerFile, false);
  const scheduler = schedulerRaw ? parseSchedulerConfig(schedulerRaw, schedulerFile) : undefined;

  const transformerConfigFile = join(directory, 'transformer', 'config.json');
  const transformerConfig = await readJson(transformerConfigFile, false);
  const transformerInChannels = positiveNumber(transformerConfig?.['in_channels'], transformerConfigFile, 'in_channels');

  return {
    directory,
    name: name ?? basename(directory),
    declaredDefaults,
    scheduler,
    vae: await readVaeSettings(directory),
    transformerInChannels,
    onnx,
    clipTokenizerDirectory,
    t5TokenizerDirectory,
  };
}
