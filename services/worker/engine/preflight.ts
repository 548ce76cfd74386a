/**
 * The model preflight: everything that can be known about a model directory without creating an
 * onnxruntime session (which for FLUX.1 takes minutes and 30-90 GB): the layout, every config, the
 * tokenizer files, each ONNX header (inputs, outputs, element types, operators, external weight
 * files and their sizes), the schedule and defaults the engine will use, and an estimate of the memory
 * a worker needs. All problems are collected and reported together, each with its file and the fix.
 * `t2i model check`, the worker and `t2i generate` run it before loading.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bindClipEncoder, bindT5Encoder, bindTransformer, bindVaeDecoder, type ModelSignature } from './components.ts';
import { EngineError } from './errors.ts';
import {
  COMPONENT_FOLDERS,
  FLUX_DEV_DEFAULTS,
  FLUX_SCHNELL_DEFAULTS,
  readDeclaredDefaults,
  readJson,
  readVaeSettings,
  type ComponentName,
  type VaeSettings,
} from './model-files.ts';
import { readOnnxHeader, weightBytes, type OnnxHeader } from './onnx-header.ts';
import { DEFAULT_SCHEDULER_CONFIG, FLUX_DEV_SCHEDULER_CONFIG, parseSchedulerConfig, type FlowMatchSchedulerConfig } from './schedule.ts';
import { tokenizerJsonText, tokenizerSourceOf, type TokenizerSource } from './tokenizer-files.ts';
import type { ExecutionProviderName, ModelDefaults } from './types.ts';
import { estimateMemory, type MemoryEstimate } from './memory-estimate.ts';

export interface PreflightOptions {
  provider?: ExecutionProviderName;
  /** For the memory estimate. Default 1. */
  batch?: number;
  /** For the memory estimate. Default: the model's default size. */
  width?: number;
  height?: number;
}

export interface PreflightIssue {
  severity: 'error' | 'warning';
  /** The file or folder at fault. */
  file: string;
  problem: string;
  fix: string;
  /** A file or folder is absent (rather than present and unusable). */
  missing?: boolean;
}

export interface ComponentReport {
  file: string;
  inputs: { name: string; type: string; shape: (number | string)[] }[];
  outputs: { name: string; type: string; shape: (number | string)[] }[];
  /** Element types of the weights, bytes each. */
  weights: Record<string, number>;
  weightBytes: number;
  externalFiles: string[];
}

export interface PreflightReport {
  directory: string;
  layout: string;
  ok: boolean;
  components: Partial<Record<ComponentName, ComponentReport>>;
  tokenizers: { clip: TokenizerSource | null; t5: TokenizerSource | null };
  usesGuidance: boolean | null;
  schedule: { source: string; config: FlowMatchSchedulerConfig } | null;
  defaults: ModelDefaults | null;
  vae: VaeSettings | null;
  weightBytes: number;
  memory: MemoryEstimate | null;
  issues: PreflightIssue[];
  elapsedMs: number;
}

const OPTIMUM_EXPORT = 'optimum-cli export onnx --model <checkpoint or hub id> --task text-to-image <out dir>';
/** onnxruntime contrib operators with CUDA kernels only (written by optimize_pipeline.py for GPUs). */
const GPU_ONLY_OPERATORS = new Set([
  'com.microsoft:GroupNorm',
  'com.microsoft:SkipGroupNorm',
  'com.microsoft:BiasSplitGelu',
  'com.microsoft:BiasAdd',
  'com.microsoft:NhwcConv',
  'com.microsoft:RelativePositionBias',
]);

function detectUnsupportedLayout(directory: string, entries: Set<string>): { layout: string; issue: PreflightIssue } | undefined {
  if (['clip.opt', 't5.opt', 'transformer.opt', 'vae.opt'].some((d) => entries.has(d))) {
    return {
      layout: 'black-forest-labs TensorRT export (*.opt/)',
      issue: {
        severity: 'error',
        file: directory,
        problem:
          'this is black-forest-labs’ TensorRT-oriented ONNX export (clip.opt/, t5.opt/, transformer.opt/{bf16,fp8,fp4}/, vae.opt/): bf16/fp8/fp4 I/O that onnxruntime-node cannot feed, other input names, and no tokenizers, scheduler or VAE configs',
        fix: `export the PyTorch checkpoint in optimum's layout instead: ${OPTIMUM_EXPORT} (see docs/models.md)`,
      },
    };
  }
  if (entries.has('unet')) {
    return {
      layout: 'Stable Diffusion (UNet) export',
      issue: {
        severity: 'error',
        file: join(directory, 'unet'),
        problem: 'this is a UNet (Stable Diffusion) pipeline, not FLUX.1',
        fix: 'point T2I_MODEL at a FLUX.1 export (docs/models.md)',
      },
    };
  }
  const transformerDir = join(directory, 'transformer');
  if (entries.has('transformer') && !existsSync(join(transformerDir, 'model.onnx'))) {
    const files = readdirSync(transformerDir);
    if (files.some((f) => f.endsWith('.safetensors') || f.endsWith('.bin'))) {
      return {
        layout: 'diffusers PyTorch checkpoint',
        issue: {
          severity: 'error',
          file: transformerDir,
          problem: 'a PyTorch (safetensors) checkpoint, not an ONNX export',
          fix: `export it to ONNX first: ${OPTIMUM_EXPORT}`,
        },
      };
    }
  }
  return undefined;
}

function componentReport(header: OnnxHeader): ComponentReport {
  const specs = (m: Map<string, { name: string; type: string; shape: ReadonlyArray<number | string> }>) =>
    [...m.values()].map((s) => ({ name: s.name, type: s.type, shape: [...s.shape] }));
  return {
    file: header.file,
    inputs: specs(header.inputs),
    outputs: specs(header.outputs),
    weights: header.weightTypes,
    weightBytes: weightBytes(header),
    externalFiles: header.external.map((e) => e.location),
  };
}

export type { MemoryEstimate };

export async function preflightModel(modelDirectory: string, options: PreflightOptions = {}): Promise<PreflightReport> {
  const started = performance.now();
  const directory = resolve(modelDirectory);
  const report: PreflightReport = {
    directory,
    layout: 'optimum ONNX (text_encoder/, text_encoder_2/, transformer/, vae_decoder/)',
    ok: false,
    components: {},
    tokenizers: { clip: null, t5: null },
    usesGuidance: null,
    schedule: null,
    defaults: null,
    vae: null,
    weightBytes: 0,
    memory: null,
    issues: [],
    elapsedMs: 0,
  };
  const issue = (severity: PreflightIssue['severity'], file: string, problem: string, fix: string, missing = false) =>
    // Messages of the readers start with the path, which the report already names.
    report.issues.push({
      severity,
      file,
      problem: problem.startsWith(`${file}: `) ? problem.slice(file.length + 2) : problem.replace(/^\/\S+: /, ''),
      fix,
      ...(missing ? { missing } : {}),
    });
  const finish = () => {
    report.ok = !report.issues.some((i) => i.severity === 'error');
    report.elapsedMs = performance.now() - started;
    return report;
  };
  if (!existsSync(directory) || !statSync(directory).isDirectory()) {
    issue('error', directory, 'model directory not found', 'set T2I_MODEL (or --model) to the folder of a FLUX.1 ONNX export', true);
    return finish();
  }
  const entries = new Set(readdirSync(directory));
  const unsupported = detectUnsupportedLayout(directory, entries);
  if (unsupported) {
    report.layout = unsupported.layout;
    report.issues.push(unsupported.issue);
    return finish();
  }

  // ONNX components
  const signatures: Partial<Record<ComponentName, ModelSignature>> = {};
  for (const [component, folder] of Object.entries(COMPONENT_FOLDERS) as [ComponentName, string][]) {
    const file = join(directory, folder, 'model.onnx');
    if (!existsSync(file)) {
      issue(
        'error',
        file,
        `${folder}/model.onnx is missing`,
        `export all four components (${OPTIMUM_EXPORT}); a PyTorch folder needs exporting first`,
        true,
      );
      continue;
    }
    let header: OnnxHeader;
    try {
      header = readOnnxHeader(file);
    } catch (error) {
      issue('error', file, `not a readable ONNX model (${(error as Error).message})`, 're-export or re-download this file');
      continue;
    }
    report.components[component] = componentReport(header);
    for (const ext of header.external) {
      const path = join(folder, ext.location);
      if (ext.sizeOnDisk === undefined) {
        issue(
          'error',
          join(directory, path),
          `external weight file ${ext.location} (referenced by ${folder}/model.onnx) is missing`,
          `copy ${ext.location} next to ${folder}/model.onnx: onnxruntime reads external weights relative to the .onnx file, under the exact name the model records`,
          true,
        );
      } else if (ext.sizeOnDisk < ext.requiredBytes) {
        issue(
          'error',
          join(directory, path),
          `external weight file ${ext.location} has ${ext.sizeOnDisk} bytes, the model reads up to byte ${ext.requiredBytes}`,
          'the file is truncated (an interrupted download or copy): fetch it again',
        );
      }
    }
    if ((options.provider ?? 'cpu') === 'cpu') {
      const gpuOnly = [...header.operators].filter((op) => GPU_ONLY_OPERATORS.has(op));
      if (gpuOnly.length > 0) {
        issue(
          'error',
          file,
          `uses operators that onnxruntime runs on CUDA only: ${gpuOnly.join(', ')}`,
          'run it with T2I_EXECUTION_PROVIDER=cuda, or on CPU use the export before onnxruntime’s GPU optimizer (optimize_pipeline.py)',
        );
      }
    }
    const signature: ModelSignature = { file, inputs: header.inputs, outputs: header.outputs };
    try {
      if (component === 'textEncoder') bindClipEncoder(signature);
      else if (component === 'textEncoder2') bindT5Encoder(signature);
      else if (component === 'transformer') report.usesGuidance = bindTransformer(signature).guidance !== undefined;
      else bindVaeDecoder(signature);
      signatures[component] = signature;
    } catch (error) {
      const message = (error as Error).message.replace(`${file}: `, '');
      const bf16 = /bfloat16/.test(message);
      issue(
        'error',
        file,
        message,
        bf16
          ? 'bfloat16 I/O cannot be fed from Node: export with float32 I/O (optimum) or float16 I/O (optimize_pipeline.py --float16), see docs/models.md'
          : `re-export with optimum (${OPTIMUM_EXPORT}), whose input and output names the engine reads`,
      );
    }
  }
  report.weightBytes = Object.values(report.components).reduce((sum, c) => sum + (c?.weightBytes ?? 0), 0);

  // tokenizers
  for (const [role, folder] of [
    ['clip', 'tokenizer'],
    ['t5', 'tokenizer_2'],
  ] as const) {
    const dir = join(directory, folder);
    const source = existsSync(dir) ? tokenizerSourceOf(dir) : undefined;
    report.tokenizers[role] = source ?? null;
    if (!source) {
      issue(
        'error',
        dir,
        `${role === 'clip' ? 'CLIP' : 'T5'} tokenizer files missing (tokenizer.json${role === 'clip' ? ', or vocab.json + merges.txt' : ', or spiece.model'})`,
        `copy the ${folder}/ folder of the original FLUX.1 checkpoint here`,
        true,
      );
      continue;
    }
    try {
      await tokenizerJsonText(dir);
    } catch (error) {
      issue('error', dir, (error as Error).message, `copy the ${folder}/ folder of the original FLUX.1 checkpoint here`);
    }
  }

  // configs: VAE, t2i.json defaults, scheduler
  try {
    report.vae = await readVaeSettings(directory);
  } catch (error) {
    issue(
      'error',
      join(directory, 'vae_decoder', 'config.json'),
      (error as Error).message,
      'copy vae/config.json of the original checkpoint to vae_decoder/config.json (optimum writes it there)',
      error instanceof EngineError && error.code === 'MODEL_NOT_FOUND',
    );
  }
  const t2iFile = join(directory, 't2i.json');
  let declared: Partial<ModelDefaults> & { name?: string } = {};
  try {
    declared = readDeclaredDefaults(await readJson(t2iFile, false), t2iFile);
  } catch (error) {
    issue('error', t2iFile, (error as Error).message, 'fix or delete t2i.json (it only sets defaults)');
  }
  const schedulerFile = join(directory, 'scheduler', 'scheduler_config.json');
  try {
    const raw = await readJson(schedulerFile, false);
    if (raw) report.schedule = { source: 'scheduler/scheduler_config.json', config: parseSchedulerConfig(raw, schedulerFile) };
    else if (report.usesGuidance === true) {
      report.schedule = { source: 'FLUX.1-dev default (no scheduler config)', config: FLUX_DEV_SCHEDULER_CONFIG };
      issue(
        'warning',
        schedulerFile,
        'missing: the transformer has a guidance input (FLUX.1-dev), so FLUX.1-dev’s schedule is used (shift 3, dynamic shifting)',
        'copy scheduler/scheduler_config.json from the original checkpoint so the schedule is the model’s own',
      );
    } else if (report.usesGuidance === false) {
      report.schedule = { source: 'FLUX.1-schnell default (no scheduler config)', config: DEFAULT_SCHEDULER_CONFIG };
      issue(
        'warning',
        schedulerFile,
        'missing: the transformer has no guidance input (FLUX.1-schnell), so schnell’s schedule is used (shift 1, static)',
        'copy scheduler/scheduler_config.json from the original checkpoint so the schedule is the model’s own',
      );
    }
  } catch (error) {
    issue('error', schedulerFile, (error as Error).message, 'copy scheduler/scheduler_config.json from the original checkpoint');
  }
  if (report.usesGuidance !== null) {
    const base = report.usesGuidance ? FLUX_DEV_DEFAULTS : FLUX_SCHNELL_DEFAULTS;
    const { name: _name, ...values } = declared;
    report.defaults = { ...base, ...values };
  }
  const transformerConfig = await readJson(join(directory, 'transformer', 'config.json'), false).catch(() => undefined);
  report.memory = estimateMemory(report, transformerConfig, options);
  if (!existsSync(join(directory, 'model_index.json'))) {
    issue(
      'warning',
      join(directory, 'model_index.json'),
      'missing (not needed by t2i, but diffusers and optimum need it to load the folder)',
      'copy it from the original checkpoint',
    );
  }
  return finish();
}

/** One EngineError naming every error of the report (warnings left out), for load() to throw. */
export function preflightError(report: PreflightReport): EngineError {
  const errors = report.issues.filter((i) => i.severity === 'error');
  const lines = errors.map((i, n) => `  ${n + 1}. ${i.file}: ${i.problem}\n     fix: ${i.fix}`);
  const code = errors.every((i) => i.missing) ? 'MODEL_NOT_FOUND' : 'MODEL_UNSUPPORTED';
  return new EngineError(
    code,
    `model ${report.directory} (${report.layout}) cannot be used: ${errors.length} problem${errors.length === 1 ? '' : 's'}\n${lines.join('\n')}`,
  );
}
