/**
 * The sink's memory over many jobs: does it forget finished ones? An in-process sink (real Kafka, real S3)
 * gets JOBS small jobs one after another — three of every four complete (started, produced, results), the
 * fourth fails (started, some results, then its producer's `failed` event) — and the V8 heap after a full
 * GC and the resident set are read after job 10 and after the last one. Goal (issue: nothing lost, nothing
 * hung): the resident memory after 1,000 jobs within 10% of its memory after 10.
 *
 *   node --expose-gc --import tsx bench/sink/jobs-memory.ts [--jobs 1000] [--out FILE]
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { AvroCodec } from '../../services/common/avro.ts';
import { loadConfig, topicNames } from '../../services/common/config.ts';
import { createKafka, ensureTopics } from '../../services/common/kafka.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import { jobEvent } from '../../services/common/messages.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createSink } from '../../services/sink/sink.ts';
import { buildJob, dataMessages, sendData, sendEvent, variedRows } from '../../test/sink/synthetic-job.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const { values } = parseArgs({
  options: {
    jobs: { type: 'string', default: '1000' },
    out: { type: 'string', default: path.join(PACKAGE_ROOT, 'bench', 'results', 'sink-jobs-memory.json') },
  },
});
const JOBS = Number(values.jobs);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

const suffix = Math.random().toString(36).slice(2, 8);
const config = loadConfig({ ...process.env, T2I_TOPIC_PREFIX: `bench-mem-${suffix}.`, S3_BUCKET: `bench-mem-${suffix}` });
const logger = silentLogger();
const kafka = createKafka(config.kafka, logger);
const admin = kafka.admin();
await admin.connect();
await ensureTopics(admin, config.kafka.topicPrefix, { promptPartitions: 4 });
const topics = topicNames(config.kafka.topicPrefix);
const store = new ObjectStore(config.s3);
await store.ensureBucket();
const codec = new AvroCodec();
const producer = new MessageProducer(kafka, codec);
await producer.connect();

let finished = 0;
let waiting: { count: number; resolve: () => void } | undefined;
const onFinished = () => {
  finished++;
  if (waiting && finished >= waiting.count) waiting.resolve();
};
const sink = createSink({
  config,
  logger,
  kafka,
  store,
  codec,
  registry: new Registry(),
  flushIntervalMs: 200,
  onJobCompleted: onFinished,
  onJobFailed: onFinished,
});
await sink.start();

const untilFinished = (count: number) =>
  finished >= count ? Promise.resolve() : new Promise<void>((resolve) => (waiting = { count, resolve }));

function memory() {
  for (let i = 0; i < 3; i++) gc!();
  const m = process.memoryUsage();
  return { heapUsedMB: m.heapUsed / 2 ** 20, rssMB: m.rss / 2 ** 20 };
}

const samples: { jobs: number; heapUsedMB: number; rssMB: number; jobsInFlight: number }[] = [];
const started = Date.now();
for (let j = 1; j <= JOBS; j++) {
  const id = `mem-${j}`;
  const job = buildJob(id, variedRows(4, j));
  await sendEvent(producer, topics, job.started);
  const data = dataMessages(job);
  if (j % 4 === 0) {
    await sendData(producer, topics, data.slice(0, 2));
    await sendEvent(producer, topics, jobEvent(id, 'failed', { message: 'bench: producer failed' }));
  } else {
    await sendData(producer, topics, data);
    await sendEvent(producer, topics, job.produced);
  }
  if (j % 10 === 0) {
    await untilFinished(j);
    if (j === 10 || j === JOBS || j % 100 === 0) {
      samples.push({ jobs: j, ...memory(), jobsInFlight: sink.stats().jobsInFlight });
      process.stderr.write(`${j} jobs: heap ${samples.at(-1)!.heapUsedMB.toFixed(1)} MB, rss ${samples.at(-1)!.rssMB.toFixed(1)} MB\n`);
    }
  }
}
await untilFinished(JOBS);
const seconds = (Date.now() - started) / 1000;
const first = samples[0]!;
const last = samples.at(-1)!;
const result = {
  date: new Date().toISOString(),
  machine: 'shared 2-core VM; Kafka and s3proxy on the same machine',
  jobs: JOBS,
  failedJobs: Math.floor(JOBS / 4),
  seconds,
  samples,
  ratio: { heapUsed: last.heapUsedMB / first.heapUsedMB, rss: last.rssMB / first.rssMB },
};
fs.mkdirSync(path.dirname(values.out!), { recursive: true });
fs.writeFileSync(values.out!, `${JSON.stringify(result, null, 2)}\n`);
process.stdout.write(
  `| after job | heap used (MB, after GC) | RSS (MB) | jobs in flight |\n|---|---|---|---|\n${samples
    .filter((s) => s.jobs === first.jobs || s.jobs === last.jobs)
    .map((s) => `| ${s.jobs} | ${s.heapUsedMB.toFixed(1)} | ${s.rssMB.toFixed(1)} | ${s.jobsInFlight} |`)
    .join(
      '\n',
    )}\nratio (last / after 10): heap ${result.ratio.heapUsed.toFixed(3)}, RSS ${result.ratio.rss.toFixed(3)}; ${seconds.toFixed(0)} s\n`,
);
await sink.close();
await producer.disconnect();
await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {});
await admin.disconnect();
await store.deletePrefix('').catch(() => {});
await store.deleteBucket().catch(() => {});
store.close();
