/**
 * Sink memory and time on a large job: produces a synthetic N-row job (default 1,000,000 rows, one prompt
 * a row, 0.5% bad rows, 0.5% failed prompts) onto topics under a fresh prefix, then runs `t2i sink` as a
 * child process on that backlog and measures the time until manifest.json exists and the child's peak
 * RSS (VmHWM from /proc, sampled every 250 ms and read once more before SIGTERM). Checks output.jsonl
 * (streamed: line count, rows in input order), writes bench/results/sink.json and prints a markdown
 * table. The bench's topics and bucket are deleted afterwards.
 *
 *   node --import tsx bench/sink/sink-bench.ts [--rows N] [--max-buffered N] [--out FILE]
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DeleteBucketCommand, DeleteObjectCommand } from '@aws-sdk/client-s3';
import { Kafka, logLevel } from 'kafkajs';
import { AvroCodec } from '../../services/common/avro.ts';
import { loadConfig, topicNames } from '../../services/common/config.ts';
import { ensureTopics } from '../../services/common/kafka.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import { rowKey, type DeadLetter, type ImageResult, type JobEvent } from '../../services/common/messages.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { readLines } from '../../services/sink/merge.ts';
import type { JobManifest } from '../../services/sink/types.ts';
import { imageResult } from '../../test/sink/synthetic-job.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'max-buffered': { type: 'string' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results', 'sink.json') },
    keep: { type: 'boolean', default: false },
    'node-options': { type: 'string' },
  },
});
const ROWS = Number(values.rows);
const JOB_ID = 'bench-sink';
const tag = randomBytes(4).toString('hex');
const env = {
  T2I_TOPIC_PREFIX: `bench-sink-${tag}.`,
  S3_BUCKET: `bench-sink-${tag}`,
  T2I_LOG_LEVEL: process.env.T2I_LOG_LEVEL ?? 'warn',
  KAFKAJS_NO_PARTITIONER_WARNING: '1',
};
const config = loadConfig({ ...process.env, ...env });
const topics = topicNames(config.kafka.topicPrefix);
const kafka = new Kafka({ brokers: [...config.kafka.brokers], logLevel: logLevel.NOTHING, clientId: 't2i-bench' });
const admin = kafka.admin();
await admin.connect();
await ensureTopics(admin, config.kafka.topicPrefix, { promptPartitions: 1 });
const store = new ObjectStore(config.s3);
await store.ensureBucket();
const codec = new AvroCodec();
const producer = new MessageProducer(kafka, codec);
await producer.connect();

const log = (line: string) => process.stderr.write(`[sink-bench] ${line}\n`);

async function cleanup(): Promise<void> {
  if (values.keep) {
    log(`kept topics ${config.kafka.topicPrefix}* and bucket ${config.s3.bucket}`);
    return;
  }
  await admin.deleteTopics({ topics: Object.values(topics) }).catch((e: unknown) => log(`topic cleanup failed: ${String(e)}`));
  try {
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    for (const key of keys.sort().reverse()) await store.client.send(new DeleteObjectCommand({ Bucket: store.bucket, Key: key }));
    await store.client.send(new DeleteBucketCommand({ Bucket: store.bucket }));
  } catch (e) {
    log(`bucket cleanup failed: ${String(e)}`);
  }
}

try {
  // ---- produce the backlog: results and dead letters, then the job events
  const produceStart = Date.now();
  let prompts = 0;
  let badRows = 0;
  let failed = 0;
  const BATCH = 5000;
  const inFlight = new Set<Promise<void>>();
  const send = async (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => {
      inFlight.delete(p);
    });
    if (inFlight.size >= 4) await Promise.race(inFlight);
  };
  let results: { key: string; value: ImageResult }[] = [];
  let letters: { key: string; value: DeadLetter }[] = [];
  for (let row = 1; row <= ROWS; row++) {
    const rowJson = `{"id":${row},"prompt":"synthetic prompt number ${row}","tags":["bench"]}`;
    if (row % 200 === 7) {
      badRows++;
      letters.push({
        key: rowKey(JOB_ID, row),
        value: {
          jobId: JOB_ID,
          row,
          promptIndex: null,
          promptCount: null,
          stage: 'validate',
          error: 'no prompt',
          raw: rowJson,
          prompt: null,
          rowJson,
          attempts: 0,
          createdAt: Date.now(),
        },
      });
    } else if (row % 200 === 11) {
      prompts++;
      failed++;
      letters.push({
        key: rowKey(JOB_ID, row),
        value: {
          jobId: JOB_ID,
          row,
          promptIndex: 0,
          promptCount: 1,
          stage: 'engine',
          error: 'engine failed',
          raw: null,
          prompt: `p${row}`,
          rowJson,
          attempts: 3,
          createdAt: Date.now(),
        },
      });
    } else {
      prompts++;
      results.push({ key: rowKey(JOB_ID, row), value: imageResult(JOB_ID, row, 0, 1, `synthetic prompt number ${row}`, rowJson) });
    }
    if (results.length >= BATCH) {
      await send(producer.send(topics.results, 'ImageResult', results));
      results = [];
    }
    if (letters.length >= BATCH) {
      await send(producer.send(topics.errors, 'DeadLetter', letters));
      letters = [];
    }
    if (row % 100_000 === 0) log(`produced ${row} rows`);
  }
  await send(producer.send(topics.results, 'ImageResult', results));
  await send(producer.send(topics.errors, 'DeadLetter', letters));
  await Promise.all(inFlight);
  const now = Date.now();
  const event = (type: JobEvent['type'], at: number): JobEvent => ({
    jobId: JOB_ID,
    type,
    at,
    rows: type === 'produced' ? ROWS - badRows : 0,
    prompts: type === 'produced' ? prompts : 0,
    badRows: type === 'produced' ? badRows : 0,
    images: 0,
    errors: 0,
    source: 'synthetic',
    paramsJson: '{"bench":true}',
    outputUri: null,
    message: null,
  });
  await producer.send(topics.jobs, 'JobEvent', [
    { key: JOB_ID, value: event('started', produceStart) },
    { key: JOB_ID, value: event('produced', now) },
  ]);
  const produceSeconds = (Date.now() - produceStart) / 1000;
  const messages = prompts + badRows;
  log(`produced ${messages} messages in ${produceSeconds.toFixed(1)} s`);

  // ---- run the sink as a child on the backlog
  const args = [join(ROOT, 'bin/t2i.js'), 'sink', '--group', `bench-sink-${tag}`];
  if (values['max-buffered']) args.push('--max-buffered-messages', values['max-buffered']);
  const sinkStart = Date.now();
  const childEnv = { ...process.env, ...env, ...(values['node-options'] ? { NODE_OPTIONS: values['node-options'] } : {}) };
  const child = spawn(process.execPath, args, { cwd: ROOT, env: childEnv, stdio: ['ignore', 'ignore', 'inherit'] });
  const pid = child.pid as number;
  let peakKb = 0;
  const timeline: { s: number; rssMb: number }[] = [];
  const sample = async () => {
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const rss = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      peakKb = Math.max(peakKb, hwm);
      timeline.push({ s: Math.round((Date.now() - sinkStart) / 100) / 10, rssMb: Math.round(rss / 1024) });
    } catch {
      // exited
    }
  };
  const sampler = setInterval(() => void sample(), 250);
  let manifest: JobManifest | undefined;
  const deadline = Date.now() + 30 * 60_000;
  while (!manifest && Date.now() < deadline && child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 500));
    const body = await store.get(`jobs/${JOB_ID}/manifest.json`);
    if (body) manifest = JSON.parse(body.toString('utf8')) as JobManifest;
  }
  const sinkSeconds = (Date.now() - sinkStart) / 1000;
  await sample();
  clearInterval(sampler);
  child.kill('SIGTERM');
  const [exitCode] = (await once(child, 'exit')) as [number | null];
  if (!manifest) throw new Error(`the sink did not complete the job (exit ${exitCode})`);

  // ---- check output.jsonl by streaming it
  const stream = await store.getStream(`jobs/${JOB_ID}/output.jsonl`);
  let lines = 0;
  let lastId = 0;
  let ordered = true;
  for await (const line of readLines(stream!)) {
    const id = Number(/^\{"id":(\d+)/.exec(line)?.[1]);
    if (!(id > lastId)) ordered = false;
    lastId = id;
    lines++;
  }
  const expectedRows = ROWS - badRows - failed;
  const result = {
    rows: ROWS,
    messages,
    outputRows: lines,
    outputRowsExpected: expectedRows,
    inInputOrder: ordered,
    errors: manifest.counts.errors,
    produceSeconds: Math.round(produceSeconds * 10) / 10,
    sinkSecondsToManifest: Math.round(sinkSeconds * 10) / 10,
    messagesPerSecond: Math.round(messages / sinkSeconds),
    peakRssMb: Math.round(peakKb / 1024),
    goalRssMb: 300,
    parts: manifest.sink.parts,
    sinkExitCode: exitCode,
    maxBufferedMessages: values['max-buffered'] ? Number(values['max-buffered']) : 'default',
    childNodeOptions: values['node-options'] ?? null,
    node: process.version,
    cpus: `${availableParallelism()} × ${cpus()[0]?.model ?? 'unknown'}`,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    date: new Date().toISOString(),
    rssTimeline: timeline.filter((_, i) => i % Math.max(1, Math.ceil(timeline.length / 60)) === 0),
  };
  await mkdir(dirname(values.out!), { recursive: true });
  await writeFile(values.out!, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(
    [
      '| rows | messages | produce (s) | sink start → manifest (s) | msgs/s | peak RSS (MB) | output rows | in order |',
      '|---:|---:|---:|---:|---:|---:|---:|:---:|',
      `| ${ROWS} | ${messages} | ${result.produceSeconds} | ${result.sinkSecondsToManifest} | ${result.messagesPerSecond} | ${result.peakRssMb} | ${lines} / ${expectedRows} | ${ordered ? 'yes' : 'NO'} |`,
      '',
    ].join('\n'),
  );
  if (lines !== expectedRows || !ordered) process.exitCode = 1;
} finally {
  await producer.disconnect().catch(() => {});
  await cleanup();
  await admin.disconnect().catch(() => {});
  store.close();
}
