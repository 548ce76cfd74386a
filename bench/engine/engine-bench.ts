/**
 * Engine throughput on CPU: images/s of the tiny FLUX model at batch 1, 2, 4, 8 (after a warm-up),
 * and where the time goes (tokenizers + text encoders, transformer steps, VAE, postprocess), from the
 * pipeline's stage timing hook. Writes bench/results/engine.json and prints a markdown table.
 *
 *   node --import tsx bench/engine/engine-bench.ts [--model DIR] [--reps N] [--threads N] [--opt LEVEL]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FluxPipeline } from '../../services/worker/engine/flux-pipeline.ts';
import { DEFAULT_MODEL_DIRECTORY } from '../../services/worker/engine/generate-command.ts';
import type { GraphOptimizationLevel, PipelineStage, StageTiming } from '../../services/worker/engine/types.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL_DIRECTORY },
    reps: { type: 'string', default: '5' },
    threads: { type: 'string' },
    opt: { type: 'string', default: 'all' },
    batches: { type: 'string', default: '1,2,4,8' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'engine.json') },
  },
});
const reps = Number(values.reps);
const batches = values.batches!.split(',').map(Number);
const intraOpNumThreads = values.threads !== undefined ? Number(values.threads) : undefined;

interface Row {
  batch: number;
  reps: number;
  medianBatchMs: number;
  imagesPerSecond: number;
  /** Median over reps of each stage's total per batch, milliseconds. */
  stageMs: Record<'text' | 'transformer' | 'vae' | 'other', number>;
  transformerStepMs: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

let current: StageTiming[] = [];
const pipeline = new FluxPipeline({
  modelDirectory: values.model!,
  graphOptimizationLevel: values.opt as GraphOptimizationLevel,
  ...(intraOpNumThreads !== undefined ? { intraOpNumThreads } : {}),
  maxBatchSize: Math.max(...batches),
  onStageTiming: (timing) => current.push(timing),
});
await pipeline.load();
const { defaults } = pipeline.info;
const prompts = [
  'a photo of a cat sitting on a red chair',
  'A café, naïve — 東京 at night!',
  'a lighthouse on a cliff at dawn, volumetric light',
];

const rows: Row[] = [];
for (const batch of batches) {
  const requests = Array.from({ length: batch }, (_, i) => ({ prompt: prompts[i % prompts.length]!, seed: i }));
  await pipeline.generate(requests); // warm-up: first-run allocations and kernel selection
  const totals: number[] = [];
  const stageRuns: Array<Record<PipelineStage, number>> = [];
  const stepTimes: number[] = [];
  for (let r = 0; r < reps; r++) {
    current = [];
    const started = performance.now();
    await pipeline.generate(requests);
    totals.push(performance.now() - started);
    const byStage = { tokenize: 0, clip: 0, t5: 0, transformer: 0, vae: 0, postprocess: 0 } as Record<PipelineStage, number>;
    for (const t of current) {
      byStage[t.stage] += t.durationMs;
      if (t.stage === 'transformer') stepTimes.push(t.durationMs);
    }
    stageRuns.push(byStage);
  }
  const medianMs = median(totals);
  const stage = (name: PipelineStage): number => median(stageRuns.map((s) => s[name]));
  const text = median(stageRuns.map((s) => s.tokenize + s.clip + s.t5));
  const transformer = stage('transformer');
  const vae = stage('vae');
  rows.push({
    batch,
    reps,
    medianBatchMs: medianMs,
    imagesPerSecond: (batch * 1000) / medianMs,
    stageMs: { text, transformer, vae, other: Math.max(0, medianMs - text - transformer - vae) },
    transformerStepMs: median(stepTimes),
  });
}
await pipeline.close();

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const result = {
  date: new Date().toISOString(),
  machine: { cpu, logicalCores: availableParallelism(), memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  model: pipeline.info.model,
  modelDirectory: values.model,
  image: { width: defaults.width, height: defaults.height, steps: defaults.steps, t5Length: defaults.maxSequenceLength },
  provider: 'cpu',
  graphOptimizationLevel: values.opt,
  intraOpNumThreads: intraOpNumThreads ?? 'default',
  rows,
};
await mkdir(dirname(values.out!), { recursive: true });
await writeFile(values.out!, `${JSON.stringify(result, null, 2)}\n`);

const pct = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(0)}%`;
const lines = [
  `Engine bench ${result.date.slice(0, 10)} — ${cpu}, ${result.machine.logicalCores} logical cores, Node ${process.version}`,
  `${result.model}: ${defaults.width}x${defaults.height}, ${defaults.steps} steps, T5 ${defaults.maxSequenceLength} tokens, CPU, graph opt ${values.opt}, threads ${result.intraOpNumThreads}, ${reps} reps (median)`,
  '',
  '| batch | ms/batch | images/s | text enc. | transformer (all steps) | ms/step | VAE | other |',
  '|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.batch} | ${r.medianBatchMs.toFixed(1)} | ${r.imagesPerSecond.toFixed(2)} | ${r.stageMs.text.toFixed(1)} (${pct(r.stageMs.text, r.medianBatchMs)}) | ${r.stageMs.transformer.toFixed(1)} (${pct(r.stageMs.transformer, r.medianBatchMs)}) | ${r.transformerStepMs.toFixed(1)} | ${r.stageMs.vae.toFixed(1)} (${pct(r.stageMs.vae, r.medianBatchMs)}) | ${r.stageMs.other.toFixed(1)} (${pct(r.stageMs.other, r.medianBatchMs)}) |`,
  ),
];
console.log(lines.join('\n'));
