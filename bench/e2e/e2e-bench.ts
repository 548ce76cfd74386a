/**
 * The whole stream against the engine alone, side by side in one run, the way it runs in production:
 * long-running worker(s) and sink started here as their own processes (`t2i worker`, `t2i sink`), jobs
 * pushed by `t2i produce`, completion seen on the job events topic. Reports:
 *
 * - throughput: images/s of a ROWS-row job (from starting `t2i produce` to its `completed` event)
 *   over the engine's own images/s at the same size, steps, batch and threads (engine measured before
 *   and after the stream in this process; their mean is the reference);
 * - a per-service CPU account: CPU-ms per image of the worker outside the engine (worker process CPU
 *   minus the engine's own CPU per image × images), the sink, the producer, and the Kafka and S3 server
 *   processes, all from /proc;
 * - small-job latency on the warm services: from `t2i produce` returning to the `completed` event
 *   (manifest.json is written before it), for several 8-row jobs, next to one batch's inference time.
 *
 *   node --import tsx bench/e2e/e2e-bench.ts [--model DIR] [--width 64 --height 48 --steps 3]
 *       [--rows 10000] [--workers 1] [--batch 8] [--threads 1] [--small-jobs 5] [--warmup-rows 2000] [--nice N]
 *       [--out FILE] [--profile DIR]
 *
 * Needs the local stack (`npx t2i stack up`). Writes bench/results/e2e.json (or --out). Defaults: the
 * fast tiny random model (models/tiny-flux at 64x48, 3 steps), which shows the stream's own cost.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify, parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { AvroCodec } from '../../services/common/avro.ts';
import { loadConfig, topicNames } from '../../services/common/config.ts';
import { headersToStrings } from '../../services/common/kafka.ts';
import type { JobEvent } from '../../services/common/messages.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { stackOptionsFromEnv, stackStatus } from '../../services/stack/stack.ts';
import { createFluxPipeline } from '../../services/worker/engine/index.ts';
import { parseBashTimes, processCpuMs, setProcessNice } from './proc-cpu.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const execFileAsync = promisify(execFile);
const { values } = parseArgs({
  options: {
    model: { type: 'string', default: path.join(PACKAGE_ROOT, 'models', 'tiny-flux') },
    width: { type: 'string', default: '64' },
    height: { type: 'string', default: '48' },
    steps: { type: 'string', default: '3' },
    rows: { type: 'string', default: '10000' },
    workers: { type: 'string', default: '1' },
    batch: { type: 'string', default: '8' },
    threads: { type: 'string', default: '1' },
    'small-jobs': { type: 'string', default: '5' },
    'engine-images': { type: 'string', default: '1600' },
    /**
     * Rows of the warm-up job. A freshly started stack spends its first thousands of messages compiling
     * (Kafka and s3proxy are JVMs): on a cold stack they cost ~2x the CPU per image of a warm one.
     */
    'warmup-rows': { type: 'string', default: '2000' },
    /**
     * Run everything but the worker (sink, producer, Kafka, s3proxy) at this nice value during the
     * stream, so that the engine's thread is never the one the scheduler preempts (0: as started).
     */
    nice: { type: 'string', default: '0' },
    out: { type: 'string', default: path.join(PACKAGE_ROOT, 'bench', 'results', 'e2e.json') },
    /** Write V8 CPU profiles of the worker(s) and the sink (every thread) into this folder. */
    profile: { type: 'string' },
  },
});
const MODEL = path.resolve(values.model!);
const WIDTH = Number(values.width);
const HEIGHT = Number(values.height);
const STEPS = Number(values.steps);
const ROWS = Number(values.rows);
const WORKERS = Number(values.workers);
const BATCH = Number(values.batch);
const THREADS = Number(values.threads);
const SMALL_JOBS = Number(values['small-jobs']);
const ENGINE_IMAGES = Number(values['engine-images']);
const NICE = Number(values.nice);
const WARMUP_ROWS = Number(values['warmup-rows']);
const say = (line: string) => process.stderr.write(`${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const config = loadConfig({ ...process.env, T2I_MODEL: MODEL });
const topics = topicNames(config.kafka.topicPrefix);
const dir = path.join(PACKAGE_ROOT, '.cache', 'bench', 'e2e');
fs.mkdirSync(dir, { recursive: true });

// ---------------------------------------------------------------- the engine alone

let modelName = '';
let trueCfgScale = 1;

/** images/s, CPU-ms per image (this process: the engine is all it does meanwhile) and ms per batch. */
async function engineAlone(images: number): Promise<{ rate: number; cpuMsPerImage: number; msPerBatch: number }> {
  const engine = createFluxPipeline({
    modelDirectory: MODEL,
    intraOpNumThreads: THREADS,
    maxBatchSize: Math.max(8, BATCH),
    preferredBatchSize: BATCH,
  });
  await engine.load();
  modelName = engine.info.model;
  trueCfgScale = engine.info.defaults.trueCfgScale;
  const request = (i: number) => ({
    prompt: `a photo of object number ${i} on a table, studio light`,
    seed: i,
    width: WIDTH,
    height: HEIGHT,
    steps: STEPS,
  });
  await engine.generate(Array.from({ length: BATCH }, (_, i) => request(i)));
  const cpu = process.cpuUsage();
  const start = performance.now();
  let batches = 0;
  for (let i = 0; i < images; i += BATCH, batches++) await engine.generate(Array.from({ length: BATCH }, (_, k) => request(i + k)));
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  await engine.close();
  return { rate: images / (ms / 1000), cpuMsPerImage: (used.user + used.system) / 1000 / images, msPerBatch: ms / batches };
}

// ---------------------------------------------------------------- services

interface Service {
  name: string;
  child: ChildProcess;
  port: number;
  log: string;
}

function startService(name: string, args: string[], port: number, env: Record<string, string>): Service {
  const log = path.join(dir, `${name}.log`);
  const out = fs.openSync(log, 'w');
  const profile = values.profile ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values.profile, name)}`] : [];
  const child = spawn(process.execPath, [...profile, path.join(PACKAGE_ROOT, 'bin', 't2i.js'), ...args, '--http-port', String(port)], {
    env: {
      ...process.env,
      T2I_MODEL: MODEL,
      T2I_INTRA_OP_THREADS: String(THREADS),
      T2I_LOG_LEVEL: 'warn',
      T2I_PARENT_PID: String(process.pid),
      ...env,
    },
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  return { name, child, port, log };
}

async function waitReady(service: Service): Promise<void> {
  for (;;) {
    if (service.child.exitCode !== null) throw new Error(`${service.name} exited; see ${service.log}`);
    try {
      const response = await fetch(`http://127.0.0.1:${service.port}/readyz`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Sums of the worker metrics that say where the engine's time went (its own pacing, not a guess). */
async function engineAccount(
  workers: Service[],
): Promise<{ inference: number; starved: number; blocked: number; batches: number; batched: number }> {
  const total = { inference: 0, starved: 0, blocked: 0, batches: 0, batched: 0 };
  for (const w of workers) {
    const text = await (await fetch(`http://127.0.0.1:${w.port}/metrics`)).text();
    const read = (name: string) => Number(new RegExp(`^${name}(?:{[^}]*})? ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
    total.inference += read('t2i_worker_inference_seconds_sum');
    total.starved += read('t2i_worker_engine_starved_seconds_total');
    total.blocked += read('t2i_worker_engine_blocked_seconds_total');
    total.batches += read('t2i_worker_batch_size_count');
    total.batched += read('t2i_worker_batch_size_sum');
  }
  return total;
}

// ---------------------------------------------------------------- completion events

const codec = new AvroCodec();
const kafka = new Kafka({ brokers: [...config.kafka.brokers], logLevel: logLevel.NOTHING });
const completions = new Map<
  string,
  { resolve: (at: { event: JobEvent; at: number }) => void; promise: Promise<{ event: JobEvent; at: number }> }
>();
function completion(jobId: string) {
  let entry = completions.get(jobId);
  if (!entry) {
    let resolve: (at: { event: JobEvent; at: number }) => void = () => {};
    const promise = new Promise<{ event: JobEvent; at: number }>((r) => (resolve = r));
    entry = { resolve, promise };
    completions.set(jobId, entry);
  }
  return entry;
}

async function watchEvents(): Promise<() => Promise<void>> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topics.jobs);
  await admin.disconnect();
  const consumer = kafka.consumer({ groupId: `t2i-bench-e2e-${process.pid}`, maxWaitTimeInMs: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic: topics.jobs, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }) => {
      const at = performance.now();
      const event = codec.decode('JobEvent', message.value, headersToStrings(message.headers));
      if (event.type === 'completed') completion(event.jobId).resolve({ event, at });
      if (event.type === 'failed') throw new Error(`job ${event.jobId} failed: ${event.message ?? ''}`);
    },
  });
  for (const p of ends) consumer.seek({ topic: topics.jobs, partition: p.partition, offset: p.high });
  return () => consumer.disconnect();
}

// ---------------------------------------------------------------- one job

function writeInput(rows: number, tag: string): string {
  const file = path.join(dir, `${tag}.jsonl`);
  const lines: string[] = [];
  for (let i = 0; i < rows; i++)
    lines.push(
      JSON.stringify({ id: i, conversations: [{ role: 'user', content: `a photo of object number ${i} on a table, studio light` }] }),
    );
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

interface JobRun {
  jobId: string;
  images: number;
  /** From spawning `t2i produce` to the completed event. */
  totalMs: number;
  /** From `t2i produce` returning to the completed event. */
  afterProduceMs: number;
  producerCpuMs: number | undefined;
}

async function runJob(rows: number, tag: string): Promise<JobRun> {
  const input = writeInput(rows, tag);
  const jobId = `bench-e2e-${tag}-${Date.now().toString(36)}`;
  const done = completion(jobId).promise;
  const started = performance.now();
  const t2i = path.join(PACKAGE_ROOT, 'bin', 't2i.js');
  const { stderr } = await execFileAsync(
    'bash',
    [
      '-c',
      `nice -n ${NICE} "$0" "$1" produce "$2" --job "$3" --width "$4" --height "$5" --steps "$6" --json --no-progress >/dev/null; rc=$?; times >&2; exit $rc`,
      process.execPath,
      t2i,
      input,
      jobId,
      String(WIDTH),
      String(HEIGHT),
      String(STEPS),
    ],
    { env: { ...process.env, T2I_LOG_LEVEL: 'warn' }, maxBuffer: 16 * 1024 * 1024 },
  );
  const produced = performance.now();
  const { event, at } = await done;
  fs.rmSync(input, { force: true });
  if (event.type !== 'completed' || (event.images ?? 0) !== rows) throw new Error(`job ${jobId}: ${JSON.stringify(event)}`);
  return { jobId, images: rows, totalMs: at - started, afterProduceMs: at - produced, producerCpuMs: parseBashTimes(stderr) };
}

// ---------------------------------------------------------------- the run

const stack = await stackStatus(stackOptionsFromEnv(process.env));
const stackPids = Object.fromEntries(stack.filter((p) => p.pid !== undefined).map((p) => [p.part, p.pid!]));
if (!stack.every((p) => p.answering)) throw new Error('the local stack is not up: run `npx t2i stack up` first');

say(`engine alone (${modelName || path.basename(MODEL)}, ${WIDTH}x${HEIGHT}, ${STEPS} steps, batch ${BATCH}, ${THREADS} thread(s))…`);
const before = await engineAlone(ENGINE_IMAGES);
say(`  ${before.rate.toFixed(1)} images/s, ${before.cpuMsPerImage.toFixed(2)} CPU-ms/image`);

const stopEvents = await watchEvents();
const services: Service[] = [
  startService('sink', ['sink'], 19_381, {
    T2I_SINK_FLUSH_INTERVAL_MS: '1000',
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=192`.trim(),
  }),
];
for (let i = 0; i < WORKERS; i++)
  services.push(startService(`worker-${i + 1}`, ['worker', '--max-batch', String(BATCH)], 19_382 + i, { T2I_WORKER_ID: `bench-${i + 1}` }));
let result: unknown;
/** The processes --nice lowered (everything but the workers), put back to 0 after the stream, or on failure. */
let others: [string, number][] = [];
const restoreNice = () => {
  if (NICE !== 0) for (const [, pid] of others.splice(0)) setProcessNice(pid, 0);
};
try {
  await Promise.all(services.map(waitReady));
  say(`services ready; warm-up job (${WARMUP_ROWS} rows)…`);
  await runJob(WARMUP_ROWS, 'warmup');

  say(`small jobs (${SMALL_JOBS} × 8 rows)…`);
  const small: JobRun[] = [];
  for (let i = 0; i < SMALL_JOBS; i++) small.push(await runJob(8, `small${i}`));

  say(`stream: ${ROWS} rows…`);
  const pids: Record<string, number> = { ...stackPids };
  for (const s of services) pids[s.name] = s.child.pid!;
  const workers = services.filter((s) => s.name.startsWith('worker'));
  const accountBefore = await engineAccount(workers);
  others = Object.entries(pids).filter(([name]) => !name.startsWith('worker'));
  if (NICE !== 0) for (const [name, pid] of others) say(`  ${name}: ${setProcessNice(pid, NICE)} threads at nice ${NICE}`);
  const cpuBefore = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, processCpuMs(pid) ?? NaN]));
  const big = await runJob(ROWS, 'stream');
  const cpuAfter = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, processCpuMs(pid) ?? NaN]));
  const accountAfter = await engineAccount(workers);
  restoreNice();
  const seconds = big.totalMs / 1000;
  // Per worker: the share of the job's time its engine was running, waiting for prompts, or waiting for upload slots.
  const engineTime = {
    inferenceShare: (accountAfter.inference - accountBefore.inference) / WORKERS / seconds,
    starvedShare: (accountAfter.starved - accountBefore.starved) / WORKERS / seconds,
    blockedShare: (accountAfter.blocked - accountBefore.blocked) / WORKERS / seconds,
    meanBatch: (accountAfter.batched - accountBefore.batched) / (accountAfter.batches - accountBefore.batches),
  };
  const streamRate = big.images / (big.totalMs / 1000);

  say('engine alone again…');
  const after = await engineAlone(ENGINE_IMAGES);
  say(`  ${after.rate.toFixed(1)} images/s`);
  const engineRate = (before.rate + after.rate) / 2;
  const engineCpu = (before.cpuMsPerImage + after.cpuMsPerImage) / 2;

  const perImage = (name: string) => (cpuAfter[name]! - cpuBefore[name]!) / big.images;
  const workerCpu = workers.reduce((sum, s) => sum + perImage(s.name), 0);
  const cpu: Record<string, number> = {
    'worker (outside the engine)': workerCpu - engineCpu,
    sink: perImage('sink'),
    producer: (big.producerCpuMs ?? NaN) / big.images,
    kafka: perImage('kafka'),
    s3proxy: perImage('s3proxy'),
  };
  const outside = Object.values(cpu).reduce((a, b) => a + b, 0);
  const latencies = small.map((j) => j.afterProduceMs);
  result = {
    date: new Date().toISOString(),
    machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), shared VM; Kafka and s3proxy on the same machine`,
    settings: {
      model: modelName,
      size: `${WIDTH}x${HEIGHT}`,
      steps: STEPS,
      trueCfgScale,
      rows: ROWS,
      workers: WORKERS,
      batch: BATCH,
      intraOpThreads: THREADS,
      nice: NICE,
      warmupRows: WARMUP_ROWS,
    },
    engine: { before, after, imagesPerSecond: engineRate, cpuMsPerImage: engineCpu },
    stream: {
      images: big.images,
      seconds,
      imagesPerSecond: streamRate,
      ratioToEngine: streamRate / engineRate,
      workerEngineTime: engineTime,
    },
    cpuMsPerImage: { engine: engineCpu, ...cpu, 'all outside the engine': outside },
    smallJobs: {
      rows: 8,
      afterProduceMs: latencies,
      medianAfterProduceMs: median(latencies),
      medianTotalMs: median(small.map((j) => j.totalMs)),
      inferenceMsFor8: (8 / BATCH) * ((before.msPerBatch + after.msPerBatch) / 2),
    },
  };
} finally {
  restoreNice();
  for (const s of services) s.child.kill('SIGTERM');
  await Promise.all(services.map((s) => (s.child.exitCode === null ? new Promise((r) => s.child.once('exit', r)) : undefined)));
  await stopEvents();
}

fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, `${JSON.stringify(result, null, 2)}\n`);
const r = result as {
  engine: { imagesPerSecond: number };
  stream: { imagesPerSecond: number; ratioToEngine: number; seconds: number; workerEngineTime: Record<string, number> };
  cpuMsPerImage: Record<string, number>;
  smallJobs: { medianAfterProduceMs: number; medianTotalMs: number; inferenceMsFor8: number };
};
process.stdout.write(
  [
    `| rows | stream images/s | engine images/s | ratio |`,
    `|---|---|---|---|`,
    `| ${ROWS} | ${r.stream.imagesPerSecond.toFixed(1)} | ${r.engine.imagesPerSecond.toFixed(1)} | ${r.stream.ratioToEngine.toFixed(3)} |`,
    '',
    `worker engine time: ${Object.entries(r.stream.workerEngineTime)
      .map(([k, v]) => (k === 'meanBatch' ? `mean batch ${v.toFixed(2)}` : `${k} ${(100 * v).toFixed(1)}%`))
      .join(', ')}`,
    '',
    `| CPU-ms per image | ${Object.keys(r.cpuMsPerImage).join(' | ')} |`,
    `|---|${Object.keys(r.cpuMsPerImage)
      .map(() => '---')
      .join('|')}|`,
    `| | ${Object.values(r.cpuMsPerImage)
      .map((v) => v.toFixed(2))
      .join(' | ')} |`,
    '',
    `8-row job on warm services: ${r.smallJobs.medianAfterProduceMs.toFixed(0)} ms from \`t2i produce\` returning to completed (median; ${r.smallJobs.medianTotalMs.toFixed(0)} ms from its start), of which inference ≈ ${r.smallJobs.inferenceMsFor8.toFixed(0)} ms`,
    '',
  ].join('\n'),
);
