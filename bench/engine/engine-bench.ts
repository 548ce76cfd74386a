/**
 * Engine throughput on CPU: images/s of the tiny FLUX model at batch 1, 2, 4, 8 (after a warm-up),
 * and where the time goes (tokenizers + text encoders, transformer steps, VAE, postprocess), from the
 * pipeline's stage timing hook. Writes bench/results/engine.json and prints a markdown table.
 *
 *   node --import tsx bench/engine/engine-bench.ts [--model DIR] [--reps N] [--threads default,1,2] [--opt LEVEL] [--batches 1,2,4,8]
 *
 * Each --threads entry (intraOpNumThreads; "default" = onnxruntime's choice) gets its own pipeline.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { FluxPipeline } from '../../services/worker/engine/flux-pipeline.ts';
import { DEFAULT_MODEL_DIR } from '../../services/common/paths.ts';
import type { EngineInfo, GraphOptimizationLevel, PipelineStage, StageTiming } from '../../services/worker/engine/types.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: DEFAULT_MODEL_DIR },
    reps: { type: 'string', default: '5' },
    threads: { type: 'string', default: 'default,1,2' },
    opt: { type: 'string', default: 'all' },
    batches: { type: 'string', default: '1,2,4,8' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'engine.json') },
  },
});
const reps = Number(values.reps);
const batches = values.batches!.split(',').map(Number);
const threadSettings = values.threads!.split(',').map((t) => (t === 'default' ? undefined : Number(t)));

interface Row {
  intraOpNumThreads: number | 'default';
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

const prompts = [
  'a photo of a cat sitting on a red chair',
  'A café, naïve — 東京 at night!',
  'a lighthouse on a cliff at dawn, volumetric light',
];

async function measure(intraOpNumThreads: number | undefined): Promise<{ rows: Row[]; info: EngineInfo }> {
  let current: StageTiming[] = [];
  const pipeline = new FluxPipeline({
    modelDirectory: values.model!,
    graphOptimizationLevel: values.opt as GraphOptimizationLevel,
    ...(intraOpNumThreads !== undefined ? { intraOpNumThreads } : {}),
    maxBatchSize: Math.max(...batches),
    onStageTiming: (timing) => current.push(timing),
  });
  await pipeline.load();
  const info = pipeline.info;
  const rows: Row[] = [];
  try {
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
      const text = median(stageRuns.map((s) => s.tokenize + s.clip + s.t5));
      const transformer = median(stageRuns.map((s) => s.transformer));
      const vae = median(stageRuns.map((s) => s.vae));
      rows.push({
        intraOpNumThreads: intraOpNumThreads ?? 'default',
        batch,
        reps,
        medianBatchMs: medianMs,
        imagesPerSecond: (batch * 1000) / medianMs,
        stageMs: { text, transformer, vae, other: Math.max(0, medianMs - text - transformer - vae) },
        transformerStepMs: median(stepTimes),
      });
    }
  } finally {
    await pipeline.close();
  }
  return { rows, info };
}

const rows: Row[] = [];
let info: EngineInfo | undefined;
for (const threads of threadSettings) {
  const measured = await measure(threads);
  rows.push(...measured.rows);
  info = measured.info;
}
const { defaults, model: modelName } = info!;

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const result = {
  date: new Date().toISOString(),
  machine: { cpu, logicalCores: availableParallelism(), memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  model: modelName,
  modelDirectory: values.model,
  image: { width: defaults.width, height: defaults.height, steps: defaults.steps, t5Length: defaults.maxSequenceLength },
  provider: 'cpu',
  graphOptimizationLevel: values.opt,
  rows,
};
await mkdir(dirname(values.out!), { recursive: true });
await writeFile(values.out!, `${JSON.stringify(result, null, 2)}\n`);

const pct = (part: number, whole: number): string => `${((100 * part) / whole).toFixed(0)}%`;
const lines = [
  `Engine bench ${result.date.slice(0, 10)} — ${cpu}, ${result.machine.logicalCores} logical cores, Node ${process.version}`,
  `${result.model}: ${defaults.width}x${defaults.height}, ${defaults.steps} steps, T5 ${defaults.maxSequenceLength} tokens, CPU, graph opt ${values.opt}, ${reps} reps after warm-up (medians, ms)`,
  '',
  '| threads | batch | ms/batch | images/s | text enc. | transformer (all steps) | ms/step | VAE | other |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  ...rows.map(
    (r) =>
      `| ${r.intraOpNumThreads} | ${r.batch} | ${r.medianBatchMs.toFixed(1)} | ${r.imagesPerSecond.toFixed(2)} | ${r.stageMs.text.toFixed(1)} (${pct(r.stageMs.text, r.medianBatchMs)}) | ${r.stageMs.transformer.toFixed(1)} (${pct(r.stageMs.transformer, r.medianBatchMs)}) | ${r.transformerStepMs.toFixed(1)} | ${r.stageMs.vae.toFixed(1)} (${pct(r.stageMs.vae, r.medianBatchMs)}) | ${r.stageMs.other.toFixed(1)} (${pct(r.stageMs.other, r.medianBatchMs)}) |`,
  ),
];
console.log(lines.join('\n'));
