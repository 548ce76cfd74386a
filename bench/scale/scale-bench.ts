/**
 * Horizontal scaling of the worker pool, without GPUs: N `t2i worker` processes with the BENCHMARK-ONLY fixed-latency
 * engine (latency-worker.ts: a fixed sleep per batch instead of inference, grey images still PNG-encoded and
 * uploaded) on a 12-partition prompts topic of the real local Kafka and S3. Each run has its own topic prefix, group
 * and bucket.
 *
 * Sustained load: the backlog is produced after the N workers have joined, larger than they can finish in the
 * measurement window, so every worker always has work (as under KEDA with lag). After a warm-up (every worker has
 * delivered results), results are counted for --window seconds.
 *   throughput(N) = results / window;  efficiency(N) = throughput(N) / (N × throughput(1)).
 * Also recorded: CPU seconds the workers used per prompt (from /proc), and the machine's load.
 *
 *   node --import tsx bench/scale/scale-bench.ts [--workers 1,2,4,8] [--latency-ms 1000] [--window 45] [--out FILE]
 *
 * Writes bench/results/scale.json and prints a markdown table. See bench/scale/README.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { AssignerProtocol, Kafka, logLevel } from 'kafkajs';
import { AvroCodec } from '../../services/common/avro.ts';
import { loadConfig, topicNames } from '../../services/common/config.ts';
import { ensureTopics, headersToStrings } from '../../services/common/kafka.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { ObjectStore } from '../../services/common/object-store.ts';
import { produceJob } from '../../services/producer/produce-job.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const { values } = parseArgs({
  options: {
    workers: { type: 'string', default: '1,2,4,8' },
    'latency-ms': { type: 'string', default: '1000' },
    'max-batch': { type: 'string', default: '4' },
    partitions: { type: 'string', default: '12' },
    window: { type: 'string', default: '45' },
    out: { type: 'string', default: path.join(ROOT, 'bench', 'results', 'scale.json') },
  },
});
const workerCounts = values.workers.split(',').map(Number);
const latencyMs = Number(values['latency-ms']);
const maxBatch = Number(values['max-batch']);
const partitions = Number(values.partitions);
const windowS = Number(values.window);
const BASE_PORT = 19_300;
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface RunResult {
  workers: number;
  prompts: number;
  windowS: number;
  throughput: number;
  idealThroughput: number;
  efficiency?: number;
  workerCpuMsPerPrompt: number;
  partitionsPerWorker: number[];
  loadAverage1m: number;
}

/** utime + stime of a process, in ms (0 once it has gone). */
function cpuMs(pid: number | undefined): number {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}

async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function runOnce(n: number): Promise<RunResult> {
  const suffix = Math.random().toString(16).slice(2, 10);
  const env: Record<string, string> = {
    T2I_TOPIC_PREFIX: `bench-scale-${suffix}.`,
    S3_BUCKET: `bench-scale-${suffix}`,
    T2I_PROMPT_PARTITIONS: String(partitions),
    T2I_WORKER_GROUP: `bench-workers-${suffix}`,
    T2I_LOG_LEVEL: 'warn',
    T2I_MAX_WAIT_MS: '25',
  };
  const config = loadConfig({ ...process.env, ...env });
  const topics = topicNames(config.kafka.topicPrefix);
  const kafka = new Kafka({ brokers: [...config.kafka.brokers], logLevel: logLevel.NOTHING, clientId: 'scale-bench' });
  const admin = kafka.admin();
  await admin.connect();
  await ensureTopics(admin, config.kafka.topicPrefix, { promptPartitions: partitions });
  const store = new ObjectStore(config.s3);
  await store.ensureBucket();
  const children: ChildProcess[] = [];
  const watcher = kafka.consumer({ groupId: `bench-watch-${suffix}`, maxWaitTimeInMs: 100 });
  try {
    for (let i = 0; i < n; i++) {
      children.push(
        spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            path.join(ROOT, 'bench', 'scale', 'latency-worker.ts'),
            '--latency-ms',
            String(latencyMs),
            '--max-batch',
            String(maxBatch),
          ],
          {
            env: { ...process.env, ...env, T2I_WORKER_ID: `w${i}`, T2I_HTTP_PORT: String(BASE_PORT + i) },
            stdio: ['ignore', 'ignore', 'pipe'],
          },
        ),
      );
      // Rebalance chatter is expected while N workers join; show a worker's log only when it fails.
      const child = children.at(-1) as ChildProcess;
      let log = '';
      child.stderr?.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
      child.once('exit', (code) => {
        if (code !== 0) process.stderr.write(`worker w${i} exited with ${code}:\n${log}\n`);
      });
    }
    // All ready (connected, subscribed) and one stable group of N members before any work arrives.
    await waitUntil(
      'workers ready',
      async () =>
        (
          await Promise.all(
            children.map((_, i) =>
              fetch(`http://127.0.0.1:${BASE_PORT + i}/readyz`).then(
                (r) => r.ok,
                () => false,
              ),
            ),
          )
        ).every(Boolean),
      120_000,
    );
    let assignment: number[] = [];
    await waitUntil(
      'a stable group',
      async () => {
        const group = (await admin.describeGroups([env.T2I_WORKER_GROUP as string])).groups[0];
        if (group?.state !== 'Stable' || group.members.length !== n) return false;
        assignment = group.members.map((m) => {
          const decoded = AssignerProtocol.MemberAssignment.decode(m.memberAssignment);
          return Object.values(decoded?.assignment ?? {}).reduce((sum, list) => sum + list.length, 0);
        });
        return assignment.reduce((a, b) => a + b, 0) === partitions;
      },
      120_000,
    );

    // Results as they arrive, by worker.
    const codec = new AvroCodec();
    const arrivals: { at: number; worker: string }[] = [];
    await watcher.connect();
    await watcher.subscribe({ topic: topics.results, fromBeginning: true });
    await watcher.run({
      eachMessage: async ({ message }) => {
        const result = codec.decode('ImageResult', message.value, headersToStrings(message.headers));
        arrivals.push({ at: Date.now(), worker: result.worker });
      },
    });

    // A backlog no worker can finish in the window: every partition holds more than one worker can do in it.
    const perWorkerCapacity = Math.ceil(((windowS + 30) * 1000) / latencyMs) * maxBatch;
    const rows = perWorkerCapacity * partitions;
    const lines = Array.from({ length: rows }, (_, i) => `{"prompt":"scale bench ${i}"}\n`).join('');
    await produceJob({
      config,
      input: Readable.from([Buffer.from(lines)]),
      jobId: `scale-${n}`,
      defaults: { width: 64, height: 64, steps: 1 },
      kafka,
      logger: silentLogger(),
    });

    // Warm-up: every worker has delivered two batches (pipelines full).
    await waitUntil(
      'every worker delivering',
      () => new Set(arrivals.filter((a) => a.worker).map((a) => a.worker)).size === n && arrivals.length >= 2 * n * maxBatch,
      120_000,
    );
    await sleep(2 * latencyMs);
    const cpuBefore = children.reduce((sum, c) => sum + cpuMs(c.pid), 0);
    const start = Date.now();
    const countBefore = arrivals.length;
    await sleep(windowS * 1000);
    const counted = arrivals.length - countBefore;
    const elapsedS = (Date.now() - start) / 1000;
    const cpuUsed = children.reduce((sum, c) => sum + cpuMs(c.pid), 0) - cpuBefore;
    if (counted === 0) throw new Error('no results in the window');
    const throughput = counted / elapsedS;
    return {
      workers: n,
      prompts: counted,
      windowS: Number(elapsedS.toFixed(2)),
      throughput: Number(throughput.toFixed(3)),
      idealThroughput: (n * maxBatch * 1000) / latencyMs,
      workerCpuMsPerPrompt: Number((cpuUsed / counted).toFixed(2)),
      partitionsPerWorker: assignment.sort((a, b) => b - a),
      loadAverage1m: Number((os.loadavg()[0] ?? 0).toFixed(2)),
    };
  } finally {
    await watcher.disconnect().catch(() => {});
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((resolve) => c.once('exit', resolve)))));
    await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => {});
    await admin.disconnect();
    await store.deletePrefix('').catch(() => {});
    store.close();
  }
}

const runs: RunResult[] = [];
for (const n of workerCounts) {
  process.stderr.write(`scale bench: ${n} worker${n === 1 ? '' : 's'}…\n`);
  const result = await runOnce(n);
  runs.push(result);
  process.stderr.write(
    `  ${result.throughput} prompts/s (ideal ${result.idealThroughput}), ${result.workerCpuMsPerPrompt} worker CPU ms/prompt\n`,
  );
}
const base = runs.find((r) => r.workers === 1);
for (const run of runs) if (base) run.efficiency = Number((run.throughput / (run.workers * base.throughput)).toFixed(3));

const report = {
  date: new Date().toISOString(),
  machine: {
    cpus: os.availableParallelism(),
    model: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    note: 'shared with other jobs; see loadAverage1m per run',
  },
  parameters: { engine: 'fixed-latency (BENCHMARK ONLY)', latencyMsPerBatch: latencyMs, maxBatch, partitions, windowS, imageSize: '64x64' },
  runs,
};
fs.mkdirSync(path.dirname(values.out), { recursive: true });
fs.writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
process.stdout.write(
  `\n| workers | prompts/s | ideal | efficiency | worker CPU ms/prompt | partitions per worker | load 1m |\n|---|---|---|---|---|---|---|\n`,
);
for (const r of runs) {
  process.stdout.write(
    `| ${r.workers} | ${r.throughput.toFixed(2)} | ${r.idealThroughput.toFixed(2)} | ${r.efficiency?.toFixed(3) ?? '-'} | ${r.workerCpuMsPerPrompt} | ${r.partitionsPerWorker.join(',')} | ${r.loadAverage1m} |\n`,
  );
}
process.stdout.write(`\n${report.date} · ${report.machine.cpus} CPUs (${report.machine.model}) · ${values.out}\n`);
