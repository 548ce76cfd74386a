/**
 * `t2i run`: the main job on one machine. Brings the local stack up when nothing answers at the
 * configured addresses, starts N workers and the sink as child processes, produces the file in-process,
 * shows one progress bar for the whole job, waits for the sink's `completed` event, copies output.jsonl
 * next to the input (or to --out), prints the URIs, and stops what it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Consumer, Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import { ulid } from 'ulid';
import { logTail, servicesAnswer, stackDown, stackUp, type StackOptions } from '../stack/stack.ts';
import { openCodec, type AvroCodec } from '../common/avro.ts';
import { topicNames, type Config } from '../common/config.ts';
import { T2iError, describeError } from '../common/errors.ts';
import { createKafka, ensureTopics, headersToStrings, kafkaUnavailable, topicLayout, topicOffsets } from '../common/kafka.ts';
import { JOB_ID_PATTERN, JOB_ID_RULE, type JobEvent } from '../common/messages.ts';
import { ObjectStore } from '../common/object-store.ts';
import { PACKAGE_ROOT } from '../common/paths.ts';
import { ProgressBar, type ProgressOutput } from '../common/progress.ts';
import { produceJob } from '../producer/produce-job.ts';
import type { JobDefaults } from '../producer/options.ts';
import { errorsKey, imagesPrefix, manifestKey, outputKey } from '../common/bucket-layout.ts';

export interface RunJobOptions {
  config: Config;
  /** The JSONL prompt file. */
  input: string;
  jobId?: string;
  /** Worker processes to start. Default 1. */
  workers?: number;
  /** Where to copy output.jsonl. Default: next to the input, `<name>.output.jsonl`. */
  out?: string;
  promptKey?: string;
  defaults?: JobDefaults;
  /** The local stack to start when nothing answers at the configured addresses. */
  stack: StackOptions;
  /** Leave a stack this command started running afterwards (to browse with `t2i serve`). Default false. */
  keepStack?: boolean;
  /** Give up after this long (ms). Default: no limit. */
  timeoutMs?: number;
  /** Folder for the child processes' logs. Default .cache/run/<jobId>/. */
  logDir?: string;
  /** One-line messages for the user (stderr). */
  say: (line: string) => void;
  progressOutput?: ProgressOutput;
  logger: Logger;
  /** Extra environment for the children (tests). */
  childEnv?: Record<string, string>;
  /** Reuse a job id that was used before (its outputs are deleted first). Default false: refused. */
  force?: boolean;
  /** Aborting (SIGTERM, Ctrl-C) stops the job: producing ends, workers and sink are stopped, cleanup runs. */
  signal?: AbortSignal;
}

/** Thrown when the run was stopped by its signal: says how far the job got. */
export class RunInterrupted extends T2iError {
  constructor(
    readonly jobId: string,
    readonly stage: 'starting' | 'producing' | 'waiting',
    readonly reason: string,
  ) {
    super('CLOSED', `${reason}: job ${jobId} stopped while ${stage}`);
  }
}

export interface RunJobResult {
  jobId: string;
  event: JobEvent;
  outputFile: string;
  uris: { output: string; errors: string; manifest: string; images: string };
  /** Wall time of the whole command, stack start included. */
  elapsedMs: number;
  /** The job's own time: from the start of producing to its completion. */
  jobMs: number;
}

interface Child {
  name: string;
  process: ChildProcess;
  log: string;
  exited: Promise<number | null>;
}

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);

export async function runJob(options: RunJobOptions): Promise<RunJobResult> {
  const started = Date.now();
  const { config, say } = options;
  if (!fs.existsSync(options.input)) throw new T2iError('INPUT_INVALID', `input file not found: ${options.input}`);
  const jobId = options.jobId ?? ulid();
  if (!JOB_ID_PATTERN.test(jobId)) throw new T2iError('INPUT_INVALID', `--job ${JSON.stringify(jobId)}: a job id is ${JOB_ID_RULE}`);
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new T2iError('INPUT_INVALID', `--workers ${workers}: expected a whole number from 1 to 64`);
  const logDir = options.logDir ?? path.join(PACKAGE_ROOT, '.cache', 'run', jobId);
  fs.mkdirSync(logDir, { recursive: true });

  let stage: RunInterrupted['stage'] = 'starting';
  const aborted = new Promise<never>((_, reject) => {
    const stop = () => reject(new RunInterrupted(jobId, stage, String(options.signal?.reason ?? 'interrupted')));
    if (options.signal?.aborted) stop();
    else options.signal?.addEventListener('abort', stop, { once: true });
  });
  aborted.catch(() => {});
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch (error) {
        say(`cleanup: ${describeError(error)}`);
      }
    }
  };

  try {
    // 1. The stack: use what answers; start the local one only for loopback addresses.
    const broker = config.kafka.brokers[0] ?? '127.0.0.1:9092';
    if (!(await servicesAnswer(broker, config.s3.endpoint))) {
      const local =
        LOCAL_HOSTS.has(broker.slice(0, broker.lastIndexOf(':'))) &&
        (!config.s3.endpoint || LOCAL_HOSTS.has(new URL(config.s3.endpoint).hostname));
      if (!local) throw kafkaUnavailable(config.kafka, new Error(`nothing answers at ${broker} / ${config.s3.endpoint ?? 'AWS S3'}`));
      say('no Kafka/S3 answering: starting the local stack (t2i stack up)');
      await Promise.race([stackUp(options.stack, (line) => say(`  ${line}`)), aborted]);
      if (!options.keepStack) cleanups.push(() => stackDown(options.stack, (line) => say(`  ${line}`)));
    }
    const kafka = createKafka(config.kafka, options.logger, 't2i-run');
    const admin = kafka.admin();
    try {
      await admin.connect();
      await ensureTopics(admin, config.kafka.topicPrefix, topicLayout(config.kafka));
    } catch (error) {
      throw kafkaUnavailable(config.kafka, error);
    }
    const store = new ObjectStore(config.s3);
    cleanups.push(async () => store.close());
    await store.ensureBucket();

    // 2. Watch results, errors and job events from their current ends, so nothing of this job is missed.
    const topics = topicNames(config.kafka.topicPrefix);
    const watch = await watchJob(kafka, admin, jobId, [topics.results, topics.errors, topics.jobs], topics, await openCodec(config));
    await admin.disconnect();
    cleanups.push(() => watch.consumer.disconnect());

    // 3. Workers and the sink as child processes.
    const childEnv: Record<string, string> = {
      KAFKA_BROKERS: config.kafka.brokers.join(','),
      T2I_TOPIC_PREFIX: config.kafka.topicPrefix,
      S3_BUCKET: config.s3.bucket,
      ...(config.s3.endpoint ? { S3_ENDPOINT: config.s3.endpoint } : {}),
      T2I_MODEL: config.model.dir,
      T2I_EXECUTION_PROVIDER: config.model.executionProvider,
      T2I_HTTP_PORT: '0',
      // The children stop by themselves if this process dies without stopping them (SIGKILL).
      T2I_PARENT_PID: String(process.pid),
      T2I_LOG_LEVEL: config.logLevel === 'silent' ? 'warn' : config.logLevel,
      // Share the cores between the workers, keeping one for Kafka, S3, PNG encoding and the sink
      // (onnxruntime would otherwise give every worker one thread per core; see bench/engine).
      ...(config.model.intraOpThreads === 0
        ? { T2I_INTRA_OP_THREADS: String(Math.max(1, Math.floor((os.availableParallelism() - 1) / workers))) }
        : {}),
      ...options.childEnv,
    };
    const children: Child[] = [];
    const stopChildren = async () => {
      for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGTERM');
      const deadline = setTimeout(() => {
        for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
      }, 60_000);
      await Promise.all(children.map((c) => c.exited));
      clearTimeout(deadline);
    };
    cleanups.push(stopChildren);
    // A short spill interval: on one machine the sink's latency to `completed` matters more than its request count.
    // A capped heap keeps its memory near the live data (bench/sink: ~300 MB uncapped, ~215 MB at 128 MB).
    children.push(
      startChild(
        'sink',
        ['sink'],
        {
          T2I_SINK_FLUSH_INTERVAL_MS: '1000',
          NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --max-old-space-size=192`.trim(),
          ...childEnv,
        },
        logDir,
      ),
    );
    for (let i = 0; i < workers; i++)
      children.push(startChild(`worker-${i + 1}`, ['worker'], { ...childEnv, T2I_WORKER_ID: `${os.hostname()}-run-${i + 1}` }, logDir));
    say(`started ${workers} worker${workers > 1 ? 's' : ''} and the sink (logs in ${logDir})`);

    // 4. Produce in-process, with one progress bar for the whole job.
    const bar = new ProgressBar({ label: `job ${jobId}`, output: options.progressOutput ?? process.stderr, rateField: 'images' });
    const draw = () =>
      bar.update(watch.state.images + watch.state.promptErrors, {
        rows: watch.state.rowsProduced,
        prompts: watch.state.prompts ?? `${watch.state.promptsSoFar}+`,
        images: watch.state.images,
        errors: watch.state.promptErrors + watch.state.badRows,
      });
    watch.onChange = draw;
    const childFailure = new Promise<never>((_, reject) => {
      for (const child of children) {
        void child.exited.then((code) => {
          if (!watch.done)
            reject(
              new T2iError(
                'JOB_FAILED',
                `${child.name} exited (code ${code}) before the job completed; last lines of ${child.log}:\n${logTail(child.log, 20)}`,
              ),
            );
        });
      }
    });
    childFailure.catch(() => {});
    const produced = produceJob({
      config,
      input: options.input,
      jobId,
      ...(options.promptKey ? { promptKey: options.promptKey } : {}),
      ...(options.defaults ? { defaults: options.defaults } : {}),
      kafka,
      logger: options.logger,
      ...(options.force ? { force: true } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      onProgress: (p) => {
        watch.state.rowsProduced = p.rows;
        watch.state.promptsSoFar = p.prompts;
        draw();
      },
    });
    stage = 'producing';
    const jobStarted = Date.now();
    const summary = await Promise.race([produced, childFailure, aborted]);
    stage = 'waiting';
    watch.state.prompts = summary.prompts;
    watch.state.badRows = summary.badRows;
    draw();

    // 5. Wait for the sink's `completed` event.
    const timeout = options.timeoutMs
      ? new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new T2iError('TIMEOUT', `job ${jobId} did not complete within ${options.timeoutMs} ms`)),
            options.timeoutMs,
          ).unref(),
        )
      : new Promise<never>(() => {});
    const event = await Promise.race([watch.completed, childFailure, timeout, aborted]);
    const jobMs = Date.now() - jobStarted;
    bar.update(watch.state.images + watch.state.promptErrors, {
      rows: summary.rows,
      prompts: summary.prompts,
      images: event.images,
      errors: event.errors,
    });
    bar.finish();

    // 6. Copy output.jsonl next to the input and print where everything is.
    const outputFile = path.resolve(options.out ?? defaultOutputPath(options.input));
    const stream = await store.getStream(outputKey(jobId));
    if (!stream) throw new T2iError('JOB_FAILED', `the sink reported job ${jobId} complete but ${store.uri(outputKey(jobId))} is missing`);
    fs.mkdirSync(path.dirname(outputFile), { recursive: true });
    await pipeline(stream, fs.createWriteStream(outputFile));
    const uris = {
      output: store.uri(outputKey(jobId)),
      errors: store.uri(errorsKey(jobId)),
      manifest: store.uri(manifestKey(jobId)),
      images: store.uri(imagesPrefix(jobId)),
    };
    return { jobId, event, outputFile, uris, elapsedMs: Date.now() - started, jobMs };
  } finally {
    await cleanup();
  }
}

export function defaultOutputPath(input: string): string {
  const dir = path.dirname(input);
  const base = path.basename(input).replace(/\.jsonl?$/i, '');
  return path.join(dir, `${base}.output.jsonl`);
}

function startChild(name: string, args: string[], env: Record<string, string>, logDir: string): Child {
  const log = path.join(logDir, `${name}.log`);
  const fd = fs.openSync(log, 'a');
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, process: child, log, exited };
}

interface WatchState {
  rowsProduced: number;
  promptsSoFar: number;
  prompts: number | undefined;
  badRows: number;
  images: number;
  promptErrors: number;
}

interface JobWatch {
  consumer: Consumer;
  state: WatchState;
  completed: Promise<JobEvent>;
  done: boolean;
  onChange: () => void;
}

/**
 * Follows one job on the results, errors and jobs topics. It starts at the topics' current ends (read
 * before anything of this job is produced), so it never misses the job's messages nor reads old ones.
 * Counts are distinct (row, prompt) pairs: redelivered results are not counted twice.
 */
async function watchJob(
  kafka: Kafka,
  admin: ReturnType<Kafka['admin']>,
  jobId: string,
  topicList: string[],
  topics: ReturnType<typeof topicNames>,
  codec: AvroCodec,
): Promise<JobWatch> {
  const ends = new Map<string, { partition: number; offset: string }[]>();
  for (const topic of topicList)
    ends.set(
      topic,
      (await topicOffsets(admin, topic)).map((p) => ({ partition: p.partition, offset: p.high })),
    );
  const consumer = kafka.consumer({ groupId: `t2i-run-${jobId}-${process.pid}`, maxWaitTimeInMs: 200 });
  await consumer.connect();
  for (const topic of topicList) await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set<string>();
  let resolveCompleted: (event: JobEvent) => void = () => {};
  let rejectCompleted: (error: Error) => void = () => {};
  const watch: JobWatch = {
    consumer,
    state: { rowsProduced: 0, promptsSoFar: 0, prompts: undefined, badRows: 0, images: 0, promptErrors: 0 },
    completed: new Promise<JobEvent>((resolve, reject) => {
      resolveCompleted = resolve;
      rejectCompleted = reject;
    }),
    done: false,
    onChange: () => {},
  };
  watch.completed.catch(() => {});
  await consumer.run({
    eachMessage: async ({ topic, message }) => {
      const headers = headersToStrings(message.headers);
      await codec.loadWriterSchemas([{ value: message.value, headers }]);
      if (topic === topics.results) {
        const result = codec.decode('ImageResult', message.value, headers);
        if (result.jobId !== jobId) return;
        const key = `i/${result.row}/${result.promptIndex}`;
        if (seen.has(key)) return;
        seen.add(key);
        watch.state.images++;
      } else if (topic === topics.errors) {
        const letter = codec.decode('DeadLetter', message.value, headers);
        if (letter.jobId !== jobId || letter.promptIndex === null) return; // bad rows are counted by the producer
        const key = `e/${letter.row}/${letter.promptIndex}`;
        if (seen.has(key)) return;
        seen.add(key);
        watch.state.promptErrors++;
      } else {
        const event = codec.decode('JobEvent', message.value, headers);
        if (event.jobId !== jobId) return;
        if (event.type === 'completed') {
          watch.done = true;
          resolveCompleted(event);
        } else if (event.type === 'failed') {
          watch.done = true;
          rejectCompleted(new T2iError('JOB_FAILED', `job ${jobId} failed: ${event.message ?? 'no reason given'}`));
        }
      }
      watch.onChange();
    },
  });
  for (const [topic, partitions] of ends) for (const p of partitions) consumer.seek({ topic, partition: p.partition, offset: p.offset });
  return watch;
}
