/**
 * The engine against PyTorch (diffusers' FluxPipeline) on the same tiny FLUX.1-architecture models, the
 * same settings (64x48, 3 steps, batch 8, each model's own T5 length), in one run, rounds alternating:
 *
 * - torch: bench/engine/torch/torch_bench.py on the diffusers checkpoint
 * - engine: this engine on optimum's ONNX export of that checkpoint
 *
 * (onnxruntime's FLUX optimizer, optimize_pipeline.py, is no help on CPU: in float32 it fuses no attention
 * in optimum's FLUX export, and its text_encoder_2 and vae_decoder then use CUDA-only operators, which
 * the engine's preflight refuses.)
 *
 * at 1 intra-op thread and at each library's default. Then one profiled pass per model (onnxruntime's
 * profiler on the transformer) says which operators the time goes to. Models come from
 * `.venv-export/bin/python bench/engine/torch/build_models.py`.
 *
 *   node --import tsx bench/engine/vs-torch.ts [--rounds 2] [--batches 10] [--shapes schnell,dev] [--out FILE]
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs, promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createFluxPipeline } from '../../services/worker/engine/index.ts';
import { openModelSession } from '../../services/worker/engine/onnx-session.ts';
import type { SessionOpener } from '../../services/worker/engine/options.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '2' },
    batches: { type: 'string', default: '10' },
    batch: { type: 'string', default: '8' },
    shapes: { type: 'string', default: 'schnell,dev' },
    threads: { type: 'string', default: '1,default' },
    python: { type: 'string', default: path.join(PACKAGE_ROOT, '.venv-export', 'bin', 'python') },
    out: { type: 'string', default: path.join(PACKAGE_ROOT, 'bench', 'results', 'engine-vs-torch.json') },
  },
});
const ROUNDS = Number(values.rounds);
const BATCHES = Number(values.batches);
const BATCH = Number(values.batch);
const BASE = path.join(PACKAGE_ROOT, '.cache', 'bench', 'vs-torch');
const say = (line: string) => process.stderr.write(`${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

interface Settings {
  name: string;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  max_sequence_length: number;
}

async function torchRate(shape: string, settings: Settings, threads: number | undefined): Promise<number> {
  const { stdout } = await run(
    values.python!,
    [
      path.join(PACKAGE_ROOT, 'bench', 'engine', 'torch', 'torch_bench.py'),
      '--model',
      path.join(BASE, shape, 'diffusers'),
      '--threads',
      String(threads ?? 0),
      '--batch',
      String(BATCH),
      '--batches',
      String(BATCHES),
      '--width',
      String(settings.width),
      '--height',
      String(settings.height),
      '--steps',
      String(settings.steps),
      '--guidance',
      String(settings.guidance),
      '--max-sequence-length',
      String(settings.max_sequence_length),
    ],
    { maxBuffer: 1 << 20 },
  );
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { imagesPerSecond: number }).imagesPerSecond;
}

async function engineRate(modelDirectory: string, threads: number | undefined, openSession?: SessionOpener): Promise<number> {
  const engine = createFluxPipeline({
    modelDirectory,
    ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
    maxBatchSize: BATCH,
    preferredBatchSize: BATCH,
    ...(openSession ? { openSession } : {}),
  });
  await engine.load();
  const batch = (first: number) =>
    Array.from({ length: BATCH }, (_, i) => ({
      prompt: `a photo of object number ${first + i} on a table, studio light`,
      seed: first + i,
    }));
  await engine.generate(batch(0));
  const start = performance.now();
  for (let b = 0; b < BATCHES; b++) await engine.generate(batch((b + 1) * BATCH));
  const rate = (BATCHES * BATCH) / ((performance.now() - start) / 1000);
  await engine.close();
  return rate;
}

/** Opens the transformer with onnxruntime's profiler on (the other components as usual). */
function profilingOpener(prefix: string): SessionOpener {
  return async (file, settings) => {
    const base = await openModelSession(file, settings);
    if (!file.includes(`${path.sep}transformer${path.sep}`)) return base;
    const session = await ort.InferenceSession.create(file, {
      graphOptimizationLevel: settings.graphOptimizationLevel,
      ...(settings.intraOpNumThreads !== undefined ? { intraOpNumThreads: settings.intraOpNumThreads } : {}),
      enableProfiling: true,
      profileFilePrefix: prefix,
      logSeverityLevel: 3,
    });
    return {
      file: base.file,
      provider: base.provider,
      inputs: base.inputs,
      outputs: base.outputs,
      run: (feeds, outputNames) => session.run(feeds, outputNames as string[]),
      release: async () => {
        session.endProfiling();
        await session.release();
        await base.release();
      },
    };
  };
}

/** Kernel time by operator type from onnxruntime's profile (Chrome trace JSON): share of the transformer's time. */
function operatorShares(prefix: string): Record<string, number> {
  const dir = path.dirname(prefix);
  const file = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith(path.basename(prefix)) && f.endsWith('.json'))
    .map((f) => path.join(dir, f))
    .sort()
    .pop();
  if (!file) return {};
  const events = JSON.parse(fs.readFileSync(file, 'utf8')) as { cat?: string; name?: string; dur?: number; args?: { op_name?: string } }[];
  const byOp = new Map<string, number>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== 'Node' || !e.name?.endsWith('_kernel_time') || !e.args?.op_name) continue;
    byOp.set(e.args.op_name, (byOp.get(e.args.op_name) ?? 0) + (e.dur ?? 0));
    total += e.dur ?? 0;
  }
  return Object.fromEntries(
    [...byOp]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 8)
      .map(([op, us]) => [op, Math.round((1000 * us) / total) / 1000]),
  );
}

const shapes = values.shapes!.split(',');
const threadSettings = values.threads!.split(',').map((t) => (t === 'default' ? undefined : Number(t)));
const results: Record<string, unknown>[] = [];
const profiles: Record<string, Record<string, number>> = {};
for (const shape of shapes) {
  const settings = JSON.parse(fs.readFileSync(path.join(BASE, shape, 'settings.json'), 'utf8')) as Settings;
  for (const threads of threadSettings) {
    const rates: Record<'torch' | 'engine', number[]> = { torch: [], engine: [] };
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate the order so drift on a shared machine does not favour one side.
      const order = round % 2 === 0 ? (['torch', 'engine'] as const) : (['engine', 'torch'] as const);
      for (const who of order) {
        const rate =
          who === 'torch' ? await torchRate(shape, settings, threads) : await engineRate(path.join(BASE, shape, 'onnx'), threads);
        rates[who].push(rate);
        say(`${shape} threads=${threads ?? 'default'} ${who}: ${rate.toFixed(1)} images/s`);
      }
    }
    const row = {
      shape,
      model: settings.name,
      t5Length: settings.max_sequence_length,
      threads: threads ?? 'default',
      torch: median(rates.torch),
      engine: median(rates.engine),
      engineOverTorch: median(rates.engine) / median(rates.torch),
      all: rates,
    };
    results.push(row);
  }
  // One profiled pass per model at 1 thread.
  const prefix = path.join(os.tmpdir(), `t2i-ort-profile-${shape}-${process.pid}`);
  await engineRate(path.join(BASE, shape, 'onnx'), 1, profilingOpener(prefix));
  profiles[shape] = operatorShares(prefix);
}

const summary = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), shared VM`,
  settings: { batch: BATCH, batches: BATCHES, rounds: ROUNDS, onnxruntime: ort.env.versions.common },
  results,
  transformerOperatorShares: profiles,
};
fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, `${JSON.stringify(summary, null, 2)}\n`);
process.stdout.write(
  [
    '| shape | T5 length | threads | PyTorch images/s | engine images/s | engine / PyTorch |',
    '|---|---|---|---|---|---|',
    ...results.map(
      (r) =>
        `| ${r.shape} | ${r.t5Length} | ${r.threads} | ${(r.torch as number).toFixed(1)} | ${(r.engine as number).toFixed(1)} | ${(r.engineOverTorch as number).toFixed(2)} |`,
    ),
    '',
    ...Object.entries(profiles).map(
      ([shape, shares]) =>
        `${shape}: transformer kernel time by operator: ${Object.entries(shares)
          .map(([op, share]) => `${op} ${(100 * share).toFixed(1)}%`)
          .join(', ')}`,
    ),
    '',
  ].join('\n'),
);
