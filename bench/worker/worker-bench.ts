/**
 * Pipeline efficiency of the worker: images/s through the worker (Kafka in, PNG + S3 out, results
 * published) divided by the engine's own images/s at the same batch size, measured side by side in one
 * run (rounds alternate engine-only and worker). Also the latency the worker adds per prompt: from
 * fetched to result published, minus the engine time of its batch (p50/p99).
 *
 *   node --import tsx bench/worker/worker-bench.ts [--prompts 400] [--batch 4] [--rounds 3] [--threads 1]
 *
 * Needs the local stack (`npx t2i stack up`). Writes bench/results/worker.json.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { Registry } from 'prom-client';
import { AvroCodec } from '../../services/common/avro.ts';
import { loadConfig } from '../../services/common/config.ts';
import { ensureTopics } from '../../services/common/kafka.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createFluxPipeline, type FluxPipeline } from '../../services/worker/engine/index.ts';
import { EngineThread } from '../../services/worker/engine-thread.ts';
import { workerOptionsFromEnv } from '../../services/worker/options.ts';
import { createWorker } from '../../services/worker/worker.ts';
import { sendPrompts } from '../../test/helpers/send-prompts.ts';
import { watchTopic } from '../../test/helpers/topic-reader.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { values } = parseArgs({
  options: {
    prompts: { type: 'string', default: '400' },
    batch: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '1' },
  },
});
const N = Number(values.prompts);
const BATCH = Number(values.batch);
const ROUNDS = Number(values.rounds);
const THREADS = Number(values.threads);
const codec = new AvroCodec();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

async function engineRound(engine: FluxPipeline): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    await engine.generate(Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => ({ prompt: `bench prompt ${i + k}`, seed: i + k })));
  }
  return N / ((performance.now() - start) / 1000);
}

async function workerRound(round: number): Promise<{ rate: number; p50: number; p99: number }> {
  const prefix = `bench-w${Date.now().toString(36)}-${round}.`;
  const bucket = `bench-w${Date.now().toString(36)}-${round}`;
  const config = loadConfig({ ...process.env, T2I_TOPIC_PREFIX: prefix, S3_BUCKET: bucket, T2I_INTRA_OP_THREADS: String(THREADS) });
  const kafka = new Kafka({ brokers: [...config.kafka.brokers], logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics = await ensureTopics(admin, prefix, { promptPartitions: 12 });
  const store = new ObjectStore(config.s3);
  await store.ensureBucket();
  // All prompts are available before the worker starts: this measures sustained throughput.
  await sendPrompts(
    kafka,
    codec,
    topics.prompts,
    'bench',
    Array.from({ length: N }, (_, i) => ({ prompt: `bench prompt ${i}`, seed: i })),
  );
  // The worker runs its engine the way `t2i worker` does: in its own thread (services/worker/engine-thread.ts).
  const engine = new EngineThread({
    modelDirectory: config.model.dir,
    intraOpNumThreads: THREADS,
    maxBatchSize: Math.max(8, BATCH),
    preferredBatchSize: BATCH,
  });
  await engine.load();
  await engine.generate([{ prompt: 'warm-up', seed: 1 }]);
  const options = { ...workerOptionsFromEnv({}, { maxBatch: BATCH }), groupId: `bench-${round}-${Date.now()}` };
  const registry = new Registry();
  const worker = createWorker({ config, options, kafka, store, engine, codec, logger: silentLogger(), registry });
  const start = performance.now();
  await worker.start();
  const firsts = new Map<string, number>();
  const results = await watchTopic(kafka, codec, topics.results, 'ImageResult', { closeAfterTests: false });
  await results.until(
    `${N} distinct results`,
    (all) => {
      for (const { value } of all)
        if (!firsts.has(`${value.row}/${value.promptIndex}`)) firsts.set(`${value.row}/${value.promptIndex}`, value.createdAt);
      return firsts.size >= N;
    },
    600_000,
  );
  await results.close();
  // Steady-state rate from the results' publish times: group join and the first batch are not counted.
  const times = [...firsts.values()].sort((a, b) => a - b);
  const seconds = ((times[times.length - 1] ?? 0) - (times[0] ?? 0)) / 1000;
  void start;
  const latency = await worker.metrics.addedLatency.get();
  const starved = (await worker.metrics.engineStarvedSeconds.get()).values[0]?.value ?? 0;
  const blocked = (await worker.metrics.engineBlockedSeconds.get()).values[0]?.value ?? 0;
  process.stderr.write(
    `  engine starved ${starved.toFixed(2)} s, blocked by downstream ${blocked.toFixed(2)} s (run ${seconds.toFixed(1)} s)\n`,
  );
  // Quantiles from the histogram's cumulative buckets, interpolated within a bucket as Prometheus's histogram_quantile does.
  const buckets = latency.values
    .filter((v) => v.metricName === 't2i_worker_added_latency_seconds_bucket')
    .map((v) => ({ le: v.labels.le === '+Inf' ? Infinity : Number(v.labels.le), count: v.value }))
    .sort((a, b) => a.le - b.le);
  const q = (p: number) => {
    const total = buckets[buckets.length - 1]?.count ?? 0;
    const rank = p * total;
    let lower = 0;
    let below = 0;
    for (const b of buckets) {
      if (b.count >= rank) return b.le === Infinity ? lower : lower + ((b.le - lower) * (rank - below)) / Math.max(1, b.count - below);
      lower = b.le;
      below = b.count;
    }
    return NaN;
  };
  await worker.close();
  await engine.close();
  await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {});
  await admin.disconnect();
  await store.deletePrefix('');
  store.close();
  return { rate: (N - 1) / seconds, p50: q(0.5) * 1000, p99: q(0.99) * 1000 };
}

const config = loadConfig(process.env);
const engine = createFluxPipeline({
  modelDirectory: config.model.dir,
  intraOpNumThreads: THREADS,
  maxBatchSize: Math.max(8, BATCH),
  preferredBatchSize: BATCH,
});
await engine.load();
await engine.generate(Array.from({ length: BATCH }, (_, i) => ({ prompt: 'warm-up', seed: i })));
const engineRates: number[] = [];
const workerRates: number[] = [];
const ratios: number[] = [];
const p50s: number[] = [];
const p99s: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const e = await engineRound(engine);
  const w = await workerRound(r);
  engineRates.push(e);
  workerRates.push(w.rate);
  ratios.push(w.rate / e);
  p50s.push(w.p50);
  p99s.push(w.p99);
  process.stderr.write(
    `round ${r + 1}: engine ${e.toFixed(1)} img/s, worker ${w.rate.toFixed(1)} img/s, ratio ${(w.rate / e).toFixed(3)}, added latency p50 ${w.p50.toFixed(1)} ms p99 ${w.p99.toFixed(1)} ms\n`,
  );
}
await engine.close();
const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), shared VM; Kafka and s3proxy on the same machine`,
  settings: { prompts: N, batch: BATCH, rounds: ROUNDS, intraOpThreads: THREADS, size: '64x64', steps: 4, model: 'tiny-flux' },
  engineImagesPerSecond: { median: median(engineRates), all: engineRates },
  workerImagesPerSecond: { median: median(workerRates), all: workerRates },
  efficiency: { median: median(ratios), all: ratios },
  addedLatencyMs: { p50: median(p50s), p99: median(p99s) },
};
fs.mkdirSync(path.join(PACKAGE_ROOT, 'bench', 'results'), { recursive: true });
fs.writeFileSync(path.join(PACKAGE_ROOT, 'bench', 'results', 'worker.json'), `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(
  `| engine images/s | worker images/s | efficiency (worker/engine) | added latency p50 | p99 |\n|---|---|---|---|---|\n| ${median(engineRates).toFixed(1)} | ${median(workerRates).toFixed(1)} | ${median(ratios).toFixed(3)} | ${median(p50s).toFixed(1)} ms | ${median(p99s).toFixed(1)} ms |\n`,
);
process.exit(0);
