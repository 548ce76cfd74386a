/** The memory a FLUX model needs at a batch and size, estimated from its files (for `t2i model check`). */
import type { PreflightOptions, PreflightReport } from './preflight.ts';

export interface MemoryEstimate {
  /** Bytes of GPU memory a worker needs at the given batch and size (cuda/tensorrt), weights included. */
  gpuBytes: number;
  /** Bytes of host memory the worker process needs. */
  hostBytes: number;
  batch: number;
  width: number;
  height: number;
  /** How the numbers were made (weights + activation terms), for the reader to judge. */
  basis: string;
}

const GiB = 1024 ** 3;

/** A rough, documented estimate: weights + the largest activation set of one pass (+ runtime overhead). */
export function estimateMemory(
  report: PreflightReport,
  transformerConfig: Record<string, unknown> | undefined,
  options: PreflightOptions,
): MemoryEstimate | null {
  if (!report.defaults || !report.vae) return null;
  const batch = options.batch ?? 1;
  const width = options.width ?? report.defaults.width;
  const height = options.height ?? report.defaults.height;
  const fp16 = Object.entries(report.components.transformer?.weights ?? {}).some(
    ([type, bytes]) => type !== 'float32' && bytes > (report.weightBytes || 1) / 4,
  );
  const bpe = fp16 ? 2 : 4;
  const factor = report.vae.scaleFactor;
  const imageTokens = Math.floor(height / factor / 2) * Math.floor(width / factor / 2);
  const seq = imageTokens + report.defaults.maxSequenceLength;
  const heads = typeof transformerConfig?.['num_attention_heads'] === 'number' ? (transformerConfig['num_attention_heads'] as number) : 24;
  const headDim = typeof transformerConfig?.['attention_head_dim'] === 'number' ? (transformerConfig['attention_head_dim'] as number) : 128;
  const hidden = heads * headDim;
  // Transformer: attention scores (unfused: heads x seq^2) plus ~16 hidden-sized buffers per token.
  const transformerActivations = batch * (heads * seq * seq + 16 * seq * hidden) * bpe;
  // VAE decoder: its widest full-resolution block (FLUX: 128 channels) with ~4 live buffers, float32.
  const vaeActivations = batch * 4 * 128 * width * height * 4;
  const activations = Math.max(transformerActivations, vaeActivations);
  const gpu = (options.provider ?? 'cpu') !== 'cpu';
  const weights = report.weightBytes;
  const runtime = gpu ? 0.75 * GiB : 0.25 * GiB;
  const largest = Math.max(...Object.values(report.components).map((c) => c?.weightBytes ?? 0), 0);
  return {
    gpuBytes: gpu ? Math.ceil(weights + activations * 1.2 + runtime) : 0,
    // On a GPU, onnxruntime stages each component's weights through host memory while loading.
    hostBytes: Math.ceil(gpu ? largest + 1.5 * GiB : weights + activations * 1.2 + runtime + 0.25 * GiB),
    batch,
    width,
    height,
    basis: `weights ${(weights / GiB).toFixed(2)} GiB + 1.2 x max(transformer ${(transformerActivations / GiB).toFixed(2)} GiB [${batch} x (${heads} heads x ${seq}^2 + 16 x ${seq} x ${hidden}) x ${bpe} B], VAE ${(vaeActivations / GiB).toFixed(2)} GiB) + runtime ${(runtime / GiB).toFixed(2)} GiB`,
  };
}
