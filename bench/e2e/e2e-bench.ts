/**
 * End to end: a ROWS-row job through `t2i run` (producer, one worker process, sink; real Kafka and S3)
 * with the tiny model, against the engine's own images/s at the same batch size and threads, measured
 * in the same run (engine before and after the job; their mean is the reference).
 *
 *   node --import tsx bench/e2e/e2e-bench.ts [--rows 10000] [--workers 1] [--batch 4] [--threads 1]
 *
 * Needs the local stack (`npx t2i stack up`). Writes bench/results/e2e.json. The sink's memory on a
 * 1,000,000-row job is measured by bench/sink.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { loadConfig } from '../../services/common/config.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createFluxPipeline } from '../../services/worker/engine/index.ts';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '10000' },
    workers: { type: 'string', default: '1' },
    batch: { type: 'string', default: '4' },
    threads: { type: 'string', default: '1' },
  },
});
const ROWS = Number(values.rows);
const WORKERS = Number(values.workers);
const BATCH = Number(values.batch);
const THREADS = Number(values.threads);

/** What the engine ran with: the model's own defaults (read from the engine, never assumed). */
let modelSettings: { model: string; size: string; steps: number; trueCfgScale: number } | undefined;

async function engineRate(images: number): Promise<number> {
  const engine = createFluxPipeline({
    modelDirectory: loadConfig(process.env).model.dir,
    intraOpNumThreads: THREADS,
    maxBatchSize: Math.max(8, BATCH),
    preferredBatchSize: BATCH,
  });
  await engine.load();
  const d = engine.info.defaults;
  modelSettings = { model: engine.info.model, size: `${d.width}x${d.height}`, steps: d.steps, trueCfgScale: d.trueCfgScale };
  await engine.generate(Array.from({ length: BATCH }, (_, i) => ({ prompt: 'warm-up', seed: i })));
  const start = performance.now();
  for (let i = 0; i < images; i += BATCH)
    await engine.generate(Array.from({ length: BATCH }, (_, k) => ({ prompt: `engine bench ${i + k}`, seed: i + k })));
  const rate = images / ((performance.now() - start) / 1000);
  await engine.close();
  return rate;
}

const dir = path.join(PACKAGE_ROOT, '.cache', 'bench');
fs.mkdirSync(dir, { recursive: true });
const input = path.join(dir, `e2e-${ROWS}.jsonl`);
const lines: string[] = [];
for (let i = 0; i < ROWS; i++)
  lines.push(
    JSON.stringify({ id: i, conversations: [{ role: 'user', content: `a photo of object number ${i} on a table, studio light` }] }),
  );
fs.writeFileSync(input, `${lines.join('\n')}\n`);

const before = await engineRate(800);
process.stderr.write(`engine before: ${before.toFixed(1)} images/s\n`);
const jobId = `bench-e2e-${Date.now().toString(36)}`;
const started = performance.now();
const { stdout } = await run(
  process.execPath,
  [
    path.join(PACKAGE_ROOT, 'bin', 't2i.js'),
    'run',
    input,
    '--job',
    jobId,
    '--workers',
    String(WORKERS),
    '--json',
    '--out',
    path.join(dir, `e2e-${ROWS}.output.jsonl`),
  ],
  {
    env: { ...process.env, T2I_INTRA_OP_THREADS: String(THREADS), T2I_MAX_BATCH: String(BATCH) },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 3_600_000,
  },
);
const wall = (performance.now() - started) / 1000;
const result = JSON.parse(stdout) as { event: { images: number; rows: number; errors: number }; elapsedMs: number };
const after = await engineRate(800);
process.stderr.write(`engine after: ${after.toFixed(1)} images/s\n`);
const engine = (before + after) / 2;
const endToEnd = result.event.images / (result.elapsedMs / 1000);
const summary = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), shared VM; Kafka and s3proxy on the same machine`,
  settings: { rows: ROWS, workers: WORKERS, batch: BATCH, intraOpThreads: THREADS, ...modelSettings },
  job: {
    images: result.event.images,
    rows: result.event.rows,
    errors: result.event.errors,
    seconds: result.elapsedMs / 1000,
    wallSeconds: wall,
  },
  engineImagesPerSecond: { before, after, mean: engine },
  endToEndImagesPerSecond: endToEnd,
  ratio: endToEnd / engine,
};
fs.mkdirSync(path.join(PACKAGE_ROOT, 'bench', 'results'), { recursive: true });
fs.writeFileSync(path.join(PACKAGE_ROOT, 'bench', 'results', 'e2e.json'), `${JSON.stringify(summary, null, 2)}\n`);
fs.rmSync(input, { force: true });
process.stdout.write(
  `| rows | images | job seconds | end-to-end images/s | engine images/s | ratio |\n|---|---|---|---|---|---|\n| ${ROWS} | ${result.event.images} | ${(result.elapsedMs / 1000).toFixed(1)} | ${endToEnd.toFixed(1)} | ${engine.toFixed(1)} | ${summary.ratio.toFixed(3)} |\n`,
);
