import { randomBytes } from 'node:crypto';
import { SpanKind } from '@opentelemetry/api';
import type { Consumer, EachBatchPayload, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { monotonicFactory } from 'ulid';
import { SCHEMA_HEADER, type AvroCodec } from '../common/avro.ts';
import { topicNames, type TopicNames } from '../common/config.ts';
import { T2iError, describeError } from '../common/errors.ts';
import { ensureTopics, headersToStrings, topicLayout } from '../common/kafka.ts';
import { Lifecycle } from '../common/lifecycle.ts';
import { MessageProducer } from '../common/message-producer.ts';
import { JOB_ID_PATTERN, jobEvent, type DeadLetter, type ImageResult, type JobEvent } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { retry } from '../common/retry.ts';
import { extractTraceContext, messagingAttributes, messagingSpanName, promptAttributes, tracer } from '../common/telemetry.ts';
import { assembleJobOutput, type AssemblyStats } from './job-output.ts';
import { mergeSortedParts, readLines, sortAndDedupe, type MergeCounters } from './merge.ts';
import { compileSinkOptions, type CompiledSinkOptions, type SinkOptions } from './options.ts';
import { errorEntryLine, imageEntryLine, type PartEntry } from './part-format.ts';
import { ObjectLineWriter } from './object-writer.ts';
import { createSinkMetrics } from './sink-metrics.ts';
import { deleteOpenJob, readOpenJobs, writeOpenJob } from './open-jobs.ts';
import type { FailedJobManifest, JobManifest, SinkState, SinkStats } from './types.ts';
import { errorsKey, manifestKey, outputKey, parsePartKey, partKey, partsPrefix, sinkPrefix } from '../common/bucket-layout.ts';

/*
 * How the sink stays correct across restarts with bounded memory
 * ---------------------------------------------------------------
 * Results and dead letters of every job are buffered in memory (bounded: maxBufferedMessages/Bytes, all
 * jobs together), then spilled as one sorted, in-buffer de-duplicated "part" per job to
 * `jobs/<jobId>/_sink/parts/<ulid>-n<lines>.jsonl`. Only after every part of a spill is in the bucket are
 * the consumed offsets committed: a crash before that re-delivers the messages (duplicates at worst,
 * never a loss), a crash after it loses nothing because the data is already in the bucket. So the
 * bucket plus the committed offsets are the whole state; the process holds nothing that is not either
 * re-readable from Kafka or already spilled, and no per-row state at all.
 *
 * A part's key carries how many lines it received, so "how much has arrived for this job" is one LIST.
 * Job events (started / produced / completed) come from the small one-partition jobs topic, re-read from
 * the beginning at every start (a private consumer group that never commits).
 *
 * Completion: once the parts hold at least as many lines as the job expects (produced.prompts +
 * produced.badRows), a streaming k-way merge of the parts counts DISTINCT (row, promptIndex) keys; when
 * they match, a second merge streams output.jsonl and errors.jsonl (multipart uploads), then
 * manifest.json is written LAST, then the `completed` event is published. Duplicates (at-least-once
 * delivery) collapse in the merge; if a prompt has both an image and a dead letter, THE IMAGE WINS (the
 * prompt did produce an image, e.g. a retry succeeded after a dead letter was sent, or the reverse).
 * The output is a pure function of the set of distinct entries, so an interrupted and an uninterrupted
 * run write the same bytes. A job with manifest.json is complete: late messages for it are ignored.
 *
 * Several sink instances may share the group: the parts are in the bucket, so whichever instance
 * spills a job's last part sees the full count in its LIST and completes it (two doing it at once
 * write identical objects and at worst publish `completed` twice).
 */

interface JobState {
  jobId: string;
  started?: JobEvent;
  produced?: JobEvent;
  /** Part lines not spilled yet. */
  buffer: string[];
  bufferBytes: number;
  /** Lines in the job's parts as last seen (a LIST, plus this process's spills since). */
  partLines: number;
  /** Do not run the distinct count again before the parts hold this many lines (set by a count that fell short). */
  nextCheckAt: number;
  /** First contact: manifest check and part count from the bucket (once per process). */
  loaded?: Promise<void>;
  /** `loaded` has resolved: the hot path skips the await. */
  ready: boolean;
  /** The last completion attempt failed (S3 down…): the next tick tries again. */
  retryAttempt: boolean;
  /** When this process first heard of the job (an event or a result): the orphan clock. */
  firstSeenAt: number;
}

/** Why a job will not complete, and whether the sink must announce it (a `failed` event) or the producer did. */
interface JobFailure {
  reason: string;
  announce: boolean;
}

interface PartRef {
  key: string;
  count: number;
}

interface PendingOffset {
  topic: string;
  partition: number;
  offset: string;
}

/**
 * Longest a fetch waits at the broker for new messages. A fetch returns as soon as there are any, so
 * this bounds only idle polling, and how long a disconnect (SIGTERM) waits for the fetch in flight:
 * kafkajs's default of 5 s made an idle sink take ~9 s to stop (two consumers, one after the other).
 */
const FETCH_MAX_WAIT_MS = 500;

export class Sink {
  readonly topics: TopicNames;
  private readonly options: CompiledSinkOptions;
  private readonly config: SinkOptions['config'];
  private readonly logger: Logger;
  private readonly store: ObjectStore;
  private readonly codec: AvroCodec;
  private readonly producer: MessageProducer;
  private readonly ownsProducer: boolean;
  private readonly lifecycle: Lifecycle;
  private readonly newId = monotonicFactory();
  private readonly metrics: ReturnType<typeof createSinkMetrics>;

  private dataConsumer?: Consumer;
  private jobsConsumer?: Consumer;
  /** `topic:partition` paused at an undecodable message -> why (see block()). */
  private readonly blocked = new Map<string, string>();
  private readonly jobs = new Map<string, JobState>();
  /** Jobs known complete (manifest seen or completed event read): their late messages are dropped. */
  private readonly completed = new Set<string>();
  /** Jobs whose `completed` event is on the jobs topic (to re-publish one that a crash lost). */
  private readonly completedEvents = new Set<string>();
  private readonly pendingOffsets = new Map<string, PendingOffset>();
  /** Jobs to fail (instead of completing) on their next attempt. */
  private readonly failures = new Map<string, JobFailure>();
  /** The open-jobs ledger has been read back after the job events caught up (see open-jobs.ts). */
  private ledgerRestored = false;
  private ledgerRestoring: Promise<void> | undefined;
  private bufferedMessages = 0;
  private bufferedBytes = 0;
  private partsWritten = 0;
  private jobsCompleted = 0;
  private serialTail: Promise<unknown> = Promise.resolve();
  private readonly attemptQueue = new Set<string>();
  private attemptLoop: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
  private dataJoined = false;
  private jobsCaughtUp = false;
  private jobsCaughtUpResolve: () => void = () => {};
  private readonly jobsCaughtUpPromise = new Promise<void>((resolve) => (this.jobsCaughtUpResolve = resolve));
  private jobsTargets = new Map<number, bigint>();
  private jobsIdleTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private doneResolve: () => void = () => {};
  private doneReject: (error: unknown) => void = () => {};
  /** Resolves when the sink is closed; rejects when a consumer crashed for good. */
  readonly done: Promise<void>;

  constructor(private readonly deps: SinkOptions) {
    this.options = compileSinkOptions(deps);
    this.config = deps.config;
    this.logger = deps.logger;
    this.store = deps.store;
    this.codec = deps.codec;
    this.topics = topicNames(deps.config.kafka.topicPrefix);
    this.ownsProducer = deps.producer === undefined;
    this.producer = deps.producer ?? new MessageProducer(deps.kafka, deps.codec);
    this.lifecycle = new Lifecycle(deps.logger);
    this.metrics = createSinkMetrics(deps.registry ?? new Registry(), () => this.stats());
    this.done = new Promise<void>((resolve, reject) => {
      this.doneResolve = resolve;
      this.doneReject = reject;
    });
    this.done.catch(() => {});
  }

  getState(): SinkState {
    return this.lifecycle.getState();
  }

  /** Ready: the results/errors consumer joined its group and the job events have been read up to where they were at start. */
  isReady(): boolean {
    return this.getState() === 'RUNNING' && this.dataJoined && this.jobsCaughtUp && this.blocked.size === 0;
  }

  stats(): SinkStats {
    return {
      state: this.getState(),
      ready: this.isReady(),
      jobsInFlight: this.jobs.size,
      jobsCompleted: this.jobsCompleted,
      bufferedMessages: this.bufferedMessages,
      bufferedBytes: this.bufferedBytes,
      partsWritten: this.partsWritten,
      blockedPartitions: this.blocked.size,
    };
  }

  async start(): Promise<void> {
    this.lifecycle.transition('STARTING');
    try {
      await this.store.ensureBucket();
      const admin = this.deps.kafka.admin();
      await admin.connect();
      try {
        await ensureTopics(admin, this.config.kafka.topicPrefix, topicLayout(this.config.kafka));
        const offsets = await admin.fetchTopicOffsets(this.topics.jobs);
        for (const o of offsets) if (BigInt(o.high) > BigInt(o.low)) this.jobsTargets.set(o.partition, BigInt(o.high));
      } finally {
        await admin.disconnect().catch(() => {});
      }
      if (this.jobsTargets.size === 0) this.markJobsCaughtUp();
      await this.producer.connect();
      await this.startJobsConsumer();
      await this.startDataConsumer();
      this.timer = setInterval(() => this.tick(), this.options.flushIntervalMs);
      this.timer.unref();
      void this.restoreOpenJobs();
      this.lifecycle.transition('RUNNING');
    } catch (error) {
      this.lifecycle.transition('FAILED');
      await this.close({ flush: false });
      throw error;
    }
  }

  /**
   * Graceful close (the default): stop taking messages, spill what is buffered, commit, finish the
   * completion step in progress, leave the groups. With `flush: false` the buffers are dropped and
   * nothing is committed, as in a crash: those messages are read again by the next sink.
   */
  close(options: { flush?: boolean } = {}): Promise<void> {
    this.closing ??= this.lifecycle.close(async () => {
      this.stopping = true;
      if (this.timer) clearInterval(this.timer);
      this.markJobsCaughtUp(); // releases an attempt loop still waiting for the job events
      if (options.flush !== false) {
        try {
          await this.serial(() => this.flush());
        } catch (error) {
          this.logger.warn({ err: error }, `sink: final spill failed (the messages will be read again): ${describeError(error)}`);
        }
      }
      try {
        await this.attemptLoop;
      } catch {
        // logged by the loop
      }
      await Promise.all(
        [this.dataConsumer, this.jobsConsumer].map((consumer) =>
          consumer?.disconnect().catch((error: unknown) => {
            this.logger.warn({ err: error }, `sink: consumer disconnect failed: ${describeError(error)}`);
          }),
        ),
      );
      if (this.ownsProducer) await this.producer.disconnect().catch(() => {});
      this.doneResolve();
    });
    return this.closing;
  }

  // ---------------------------------------------------------------- consumers

  private async startJobsConsumer(): Promise<void> {
    // A private group that never commits: every start re-reads the (small, one-partition) jobs topic.
    const consumer = this.deps.kafka.consumer({
      groupId: `${this.options.groupId}-jobs-${randomBytes(6).toString('hex')}`,
      sessionTimeout: this.options.sessionTimeoutMs,
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
    });
    this.jobsConsumer = consumer;
    consumer.on(consumer.events.CRASH, (event) => this.onCrash('jobs', event.payload.error, event.payload.restart));
    consumer.on(consumer.events.GROUP_JOIN, () => {
      // Fallback for a topic whose high watermark is never reached by a data message (e.g. a trailing
      // transaction marker): quiet for a while after joining means caught up.
      this.armJobsIdleTimer();
    });
    await consumer.connect();
    await consumer.subscribe({ topic: this.topics.jobs, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        if (this.blocked.has(`${topic}:${partition}`)) return;
        if (!this.handleJobEvent(message)) {
          this.block(topic, partition, message, new Error('undecodable job event'));
          consumer.pause([{ topic, partitions: [partition] }]);
          return;
        }
        const target = this.jobsTargets.get(partition);
        if (target !== undefined && BigInt(message.offset) + 1n >= target) {
          this.jobsTargets.delete(partition);
          if (this.jobsTargets.size === 0) this.markJobsCaughtUp();
        }
        if (!this.jobsCaughtUp) this.armJobsIdleTimer();
      },
    });
  }

  private armJobsIdleTimer(): void {
    if (this.jobsCaughtUp) return;
    if (this.jobsIdleTimer) clearTimeout(this.jobsIdleTimer);
    this.jobsIdleTimer = setTimeout(() => this.markJobsCaughtUp(), 3000);
    this.jobsIdleTimer.unref();
  }

  private markJobsCaughtUp(): void {
    if (this.jobsCaughtUp) return;
    this.jobsCaughtUp = true;
    if (this.jobsIdleTimer) clearTimeout(this.jobsIdleTimer);
    this.jobsCaughtUpResolve();
  }

  private async startDataConsumer(): Promise<void> {
    const consumer = this.deps.kafka.consumer({
      groupId: this.options.groupId,
      sessionTimeout: this.options.sessionTimeoutMs,
      heartbeatInterval: Math.min(3000, Math.floor(this.options.sessionTimeoutMs / 3)),
      // Smaller fetches than kafkajs's 10 MB: each fetched message becomes several objects until its batch is done.
      maxBytes: 2 * 1024 * 1024,
      maxBytesPerPartition: 512 * 1024,
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
    });
    this.dataConsumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      this.dataJoined = true;
    });
    consumer.on(consumer.events.CRASH, (event) => {
      this.dataJoined = false;
      this.onCrash('results', event.payload.error, event.payload.restart);
    });
    await consumer.connect();
    // fromBeginning applies only to a group without committed offsets: a new sink group reads everything.
    await consumer.subscribe({ topics: [this.topics.results, this.topics.errors], fromBeginning: true });
    await consumer.run({
      autoCommit: false, // offsets are committed after the spill that holds their messages (see flush)
      eachBatchAutoResolve: false,
      eachBatch: (payload) => this.handleBatch(payload),
    });
  }

  private onCrash(which: string, error: Error, restart: boolean): void {
    this.logger.error({ err: error, restart }, `sink: ${which} consumer crashed${restart ? ' (restarting)' : ''}: ${describeError(error)}`);
    if (!restart && !this.stopping)
      this.doneReject(new T2iError('KAFKA_UNAVAILABLE', `sink ${which} consumer stopped: ${describeError(error)}`, { cause: error }));
  }

  // ---------------------------------------------------------------- ingest

  /** Runs `fn` after every earlier serial step: ingest and spills never interleave, so buffers and offsets agree. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serialTail.then(fn);
    this.serialTail = run.catch(() => undefined);
    return run;
  }

  private async handleBatch(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    if (this.stopping || this.blocked.has(`${batch.topic}:${batch.partition}`)) return;
    this.metrics.lag.set({ topic: batch.topic, partition: String(batch.partition) }, Number(batch.offsetLag()));
    await this.serial(async () => {
      let spillSoon = false;
      let last: string | undefined;
      // Offsets are noted (and resolved) before each spill and at the end, not per message: fewer allocations.
      const note = () => {
        if (last === undefined) return;
        this.pendingOffsets.set(`${batch.topic}:${batch.partition}`, {
          topic: batch.topic,
          partition: batch.partition,
          offset: (BigInt(last) + 1n).toString(),
        });
        payload.resolveOffset(last);
      };
      for (const message of batch.messages) {
        if (this.stopping || !payload.isRunning() || payload.isStale()) break;
        // Bounded memory: spill before taking more. A failed spill throws, and kafkajs fetches this
        // batch again from the first offset not resolved.
        if (this.bufferedMessages >= this.options.maxBufferedMessages || this.bufferedBytes >= this.options.maxBufferedBytes) {
          note();
          await this.flush(payload.heartbeat);
          spillSoon = false;
        }
        const outcome = await this.ingest(batch.topic, batch.partition, message);
        if (outcome === 'blocked') {
          payload.pause();
          break;
        }
        spillSoon = outcome || spillSoon;
        last = message.offset;
      }
      note();
      // A job that may now be complete is spilled at once rather than at the next tick.
      if (spillSoon && !this.stopping) await this.flush(payload.heartbeat);
    });
    await payload.heartbeat();
  }

  /**
   * One policy for a message the sink cannot decode (e.g. a schema newer than its own, mid rolling
   * upgrade): never skip it and commit past it, which would leave its job one row short forever. Its
   * partition is paused at that offset, readiness goes false, and the log and a metric say what to do;
   * an upgraded sink continues from that offset.
   */
  private block(topic: string, partition: number, message: KafkaMessage, error: unknown): void {
    const key = `${topic}:${partition}`;
    if (this.blocked.has(key)) return;
    this.blocked.set(key, describeError(error));
    this.metrics.blocked.set(this.blocked.size);
    this.logger.error(
      {
        topic,
        partition,
        offset: message.offset,
        schema: headersToStrings(message.headers)[SCHEMA_HEADER] ?? null,
        err: describeError(error),
      },
      `sink: cannot decode a message: ${topic}/${partition} paused at offset ${message.offset}, nothing after it committed, not ready. Fix: run a t2i version that knows this schema (upgrade the sink); it continues from this offset`,
    );
  }

  /** Buffers one result or dead letter; true when its job may now be complete, 'blocked' when undecodable. */
  private async ingest(topic: string, partition: number, message: KafkaMessage): Promise<boolean | 'blocked'> {
    const isResult = topic === this.topics.results;
    let value: ImageResult | DeadLetter;
    try {
      value = isResult
        ? this.codec.decode('ImageResult', message.value, message.headers)
        : this.codec.decode('DeadLetter', message.value, message.headers);
    } catch (error) {
      this.metrics.messages.inc({ kind: isResult ? 'result' : 'error', outcome: 'undecodable' });
      this.block(topic, partition, message, error);
      return 'blocked';
    }
    if (!JOB_ID_PATTERN.test(value.jobId) || !Number.isSafeInteger(value.row) || value.row < 1) {
      this.metrics.messages.inc({ kind: isResult ? 'result' : 'error', outcome: 'invalid' });
      this.logger.warn(
        { topic, offset: message.offset, jobId: value.jobId, row: value.row },
        'sink: skipping a message with an invalid jobId or row',
      );
      return false;
    }
    const span = isResult
      ? tracer().startSpan(
          messagingSpanName({ operation: 'process', topic }),
          {
            kind: SpanKind.CONSUMER,
            attributes: {
              ...messagingAttributes({
                operation: 'process',
                topic,
                partition,
                offset: message.offset,
                ...(message.key ? { key: message.key.toString('utf8') } : {}),
                consumerGroup: this.options.groupId,
              }),
              ...promptAttributes(value as ImageResult),
            },
          },
          extractTraceContext(message.headers as Record<string, unknown> | undefined),
        )
      : undefined;
    try {
      const known = this.jobs.get(value.jobId);
      const job = known?.ready ? known : await this.jobForData(value.jobId);
      if (!job) {
        this.metrics.messages.inc({ kind: isResult ? 'result' : 'error', outcome: 'ignored' });
        span?.setAttribute('t2i.ignored', true);
        return false;
      }
      const line = isResult ? imageEntryLine(value as ImageResult) : errorEntryLine(value as DeadLetter);
      job.buffer.push(line);
      job.bufferBytes += line.length;
      this.bufferedMessages++;
      this.bufferedBytes += line.length;
      this.metrics.messages.inc({ kind: isResult ? 'result' : 'error', outcome: 'buffered' });
      return job.produced !== undefined && job.partLines + job.buffer.length >= this.checkThreshold(job);
    } finally {
      span?.end();
    }
  }

  private checkThreshold(job: JobState): number {
    const expected = job.produced ? job.produced.prompts + job.produced.badRows : Number.POSITIVE_INFINITY;
    return Math.max(expected, job.nextCheckAt);
  }

  private jobState(jobId: string): JobState {
    let job = this.jobs.get(jobId);
    if (!job) {
      job = { jobId, buffer: [], bufferBytes: 0, partLines: 0, nextCheckAt: 0, retryAttempt: false, ready: false, firstSeenAt: Date.now() };
      this.jobs.set(jobId, job);
    }
    return job;
  }

  /** The state of a job that takes data, loading it from the bucket on first contact; undefined when the job is complete. */
  private async jobForData(jobId: string): Promise<JobState | undefined> {
    if (this.completed.has(jobId)) return undefined;
    const job = this.jobState(jobId);
    if (job.ready) return job;
    job.loaded ??= this.loadJob(job).catch((error: unknown) => {
      job.loaded = undefined;
      throw error;
    });
    await job.loaded;
    if (this.completed.has(jobId)) return undefined;
    job.ready = true;
    return job;
  }

  private async loadJob(job: JobState): Promise<void> {
    const manifest = await retry(() => this.store.head(manifestKey(job.jobId)), this.s3Retry('head manifest'));
    if (manifest) {
      this.markCompleted(job.jobId);
      // Its `completed` event may have been lost to a crash right after the manifest: the attempt re-publishes it.
      this.enqueueAttempt(job.jobId);
      return;
    }
    const parts = await this.listParts(job.jobId);
    job.partLines = parts.reduce((sum, p) => sum + p.count, 0);
  }

  /** false: the event cannot be decoded (the caller pauses the jobs partition). */
  private handleJobEvent(message: KafkaMessage): boolean {
    let event: JobEvent;
    try {
      event = this.codec.decode('JobEvent', message.value, message.headers);
    } catch {
      return false;
    }
    if (!JOB_ID_PATTERN.test(event.jobId)) return true;
    switch (event.type) {
      case 'started':
        if (this.completed.has(event.jobId)) {
          // The id was used before and is started again (`t2i produce --force` deleted the old job first).
          this.completed.delete(event.jobId);
          this.completedEvents.delete(event.jobId);
        }
        this.failures.delete(event.jobId);
        this.jobState(event.jobId).started = event;
        this.recordOpenJob(event.jobId);
        break;
      case 'produced':
        if (!this.completed.has(event.jobId)) {
          this.jobState(event.jobId).produced = event;
          this.recordOpenJob(event.jobId);
          this.enqueueAttempt(event.jobId);
        }
        break;
      case 'completed':
        this.completedEvents.add(event.jobId);
        this.markCompleted(event.jobId);
        break;
      case 'failed':
        if (!this.completed.has(event.jobId) && !this.failures.has(event.jobId)) {
          this.logger.warn({ jobId: event.jobId, message: event.message }, `sink: job ${event.jobId} reported failed`);
          this.failures.set(event.jobId, { reason: event.message ?? 'its producer reported it failed', announce: false });
          this.enqueueAttempt(event.jobId);
        }
        break;
    }
    return true;
  }

  // ---------------------------------------------------------------- open-jobs ledger (open-jobs.ts)

  /** Live events of open jobs go to the ledger; events replayed at start are reconciled by restoreOpenJobs. */
  private recordOpenJob(jobId: string): void {
    if (!this.ledgerRestored) return;
    const job = this.jobs.get(jobId);
    if (!job) return;
    const record = { jobId, ...(job.started ? { started: job.started } : {}), ...(job.produced ? { produced: job.produced } : {}) };
    retry(() => writeOpenJob(this.store, record), this.s3Retry('write open-jobs ledger')).catch((error: unknown) =>
      this.logger.warn(
        { err: error, jobId },
        `sink: could not record open job ${jobId} (the jobs topic still has its events): ${describeError(error)}`,
      ),
    );
  }

  /**
   * Once the job events have caught up: takes back the events of open jobs that the jobs topic no longer
   * holds (retention), records the open jobs the ledger lacks, drops entries of finished jobs, and puts
   * every open job up for a completion attempt. Retried by tick() until it succeeds.
   */
  private restoreOpenJobs(): Promise<void> {
    this.ledgerRestoring ??= (async () => {
      await this.jobsCaughtUpPromise;
      if (this.stopping) return;
      const records = await retry(
        () => readOpenJobs(this.store, (key, error) => this.logger.warn({ err: error, key }, `sink: unreadable open-jobs entry ${key}`)),
        this.s3Retry('list open-jobs ledger'),
      );
      const listed = new Set<string>();
      for (const record of records) {
        listed.add(record.jobId);
        if (this.completed.has(record.jobId)) {
          await retry(() => deleteOpenJob(this.store, record.jobId), this.s3Retry('delete open-jobs entry'));
          continue;
        }
        const job = this.jobState(record.jobId);
        if (!job.started && record.started) job.started = record.started;
        if (!job.produced && record.produced) job.produced = record.produced;
        this.enqueueAttempt(record.jobId);
      }
      this.ledgerRestored = true;
      for (const job of this.jobs.values()) {
        if (!listed.has(job.jobId) && (job.started || job.produced)) this.recordOpenJob(job.jobId);
      }
      this.kickAttempts();
    })().catch((error: unknown) => {
      this.ledgerRestoring = undefined;
      this.logger.warn({ err: error }, `sink: could not read the open-jobs ledger, will retry: ${describeError(error)}`);
    });
    return this.ledgerRestoring;
  }

  /** Results with no started/produced event for orphanJobMs: the job cannot complete, so it fails. */
  private failOrphans(): void {
    if (!this.ledgerRestored) return;
    const now = Date.now();
    for (const job of this.jobs.values()) {
      if (job.started || job.produced || this.failures.has(job.jobId) || now - job.firstSeenAt < this.options.orphanJobMs) continue;
      const minutes = Math.round(this.options.orphanJobMs / 6000) / 10;
      this.failures.set(job.jobId, {
        reason: `results arrived for job ${job.jobId}, but no started or produced event did (on the ${this.topics.jobs} topic or in the sink's open-jobs ledger) within ${minutes} min: it was not produced by t2i produce, or its events were lost`,
        announce: true,
      });
      this.enqueueAttempt(job.jobId);
    }
  }

  // ---------------------------------------------------------------- spill

  /** Periodic: spill what is buffered (so offsets get committed) and retry failed completion attempts. */
  private tick(): void {
    if (this.stopping) return;
    if (this.bufferedMessages > 0 || this.pendingOffsets.size > 0) {
      this.serial(() => this.flush()).catch((error: unknown) =>
        this.logger.warn({ err: error }, `sink: spill failed, will retry: ${describeError(error)}`),
      );
    }
    for (const job of this.jobs.values()) {
      if (job.retryAttempt) {
        job.retryAttempt = false;
        this.enqueueAttempt(job.jobId);
      }
    }
    if (this.jobsCaughtUp && !this.ledgerRestored) void this.restoreOpenJobs();
    this.failOrphans();
  }

  /**
   * Writes every job's buffer as one sorted part, then commits the offsets of everything ingested so far.
   * The commit comes only after all parts are in the bucket: a committed offset must never cover a
   * message that exists only in this process's memory. Runs inside serial().
   */
  private async flush(heartbeat?: () => Promise<void>): Promise<void> {
    const work: { job: JobState; lines: string[] }[] = [];
    for (const job of this.jobs.values()) {
      if (job.buffer.length === 0) continue;
      work.push({ job, lines: job.buffer });
      job.buffer = [];
      job.bufferBytes = 0;
    }
    this.bufferedMessages = 0;
    this.bufferedBytes = 0;
    const offsets = [...this.pendingOffsets.values()];
    this.pendingOffsets.clear();
    const failed: { job: JobState; lines: string[] }[] = [];
    let firstError: unknown;
    await forEachLimited(work, this.options.uploadConcurrency, async ({ job, lines }) => {
      if (this.completed.has(job.jobId)) return; // completed meanwhile: late copies
      try {
        const sorted = sortAndDedupe(lines);
        const key = partKey(job.jobId, this.newId(), lines.length);
        await retry(() => this.store.put(key, `${sorted.join('\n')}\n`, 'application/x-ndjson'), {
          ...this.s3Retry('spill'),
          onRetry: (error, attempt, delayMs) => {
            this.logger.warn({ attempt, delayMs }, `sink: spill of ${job.jobId} failed, retrying: ${describeError(error)}`);
            void heartbeat?.().catch(() => {});
          },
        });
        job.partLines += lines.length;
        this.partsWritten++;
        this.metrics.partsWritten.inc();
      } catch (error) {
        failed.push({ job, lines });
        firstError ??= error;
      }
    });
    if (failed.length > 0) {
      // Put the lines back and keep the offsets uncommitted, so nothing is lost without a restart either.
      for (const { job, lines } of failed) {
        if (this.completed.has(job.jobId) || this.jobs.get(job.jobId) !== job) continue;
        job.buffer = lines.concat(job.buffer);
        const bytes = lines.reduce((sum, l) => sum + l.length, 0);
        job.bufferBytes += bytes;
        this.bufferedMessages += lines.length;
        this.bufferedBytes += bytes;
      }
      for (const o of offsets) {
        const id = `${o.topic}:${o.partition}`;
        if (!this.pendingOffsets.has(id)) this.pendingOffsets.set(id, o);
      }
      throw firstError;
    }
    if (offsets.length > 0 && this.dataConsumer) {
      try {
        await this.dataConsumer.commitOffsets(offsets);
      } catch (error) {
        // The messages are safe in the bucket; an uncommitted offset only means duplicates after a restart.
        this.logger.warn(
          { err: error },
          `sink: offset commit failed (messages will be re-read, then de-duplicated): ${describeError(error)}`,
        );
      }
    }
    for (const { job } of work) if (job.produced && !this.completed.has(job.jobId)) this.enqueueAttempt(job.jobId);
  }

  // ---------------------------------------------------------------- completion

  private enqueueAttempt(jobId: string): void {
    this.attemptQueue.add(jobId);
    this.kickAttempts();
  }

  /** One completion attempt at a time (each may stream a whole job), in their own loop so ingest goes on meanwhile. */
  private kickAttempts(): void {
    if (this.attemptLoop || this.stopping) return;
    this.attemptLoop = (async () => {
      await this.jobsCaughtUpPromise;
      while (!this.stopping && this.attemptQueue.size > 0) {
        const jobId = this.attemptQueue.values().next().value as string;
        this.attemptQueue.delete(jobId);
        try {
          if (this.failures.has(jobId)) await this.failJob(jobId);
          else await this.attemptCompletion(jobId);
        } catch (error) {
          this.logger.warn({ err: error, jobId }, `sink: completion attempt for ${jobId} failed, will retry: ${describeError(error)}`);
          const job = this.jobs.get(jobId);
          if (job) job.retryAttempt = true;
        }
      }
    })().finally(() => {
      this.attemptLoop = undefined;
      if (this.attemptQueue.size > 0 && !this.stopping) this.kickAttempts();
    });
  }

  private async attemptCompletion(jobId: string): Promise<void> {
    if (this.completedEvents.has(jobId)) return;
    const existing = await retry(() => this.store.get(manifestKey(jobId)), this.s3Retry('get manifest'));
    if (existing) {
      // Complete already (by us before a crash, or by another instance): make sure its event exists, tidy up.
      this.markCompleted(jobId);
      const manifest = JSON.parse(existing.toString('utf8')) as JobManifest | FailedJobManifest;
      if (manifest.status === 'complete') await this.publishCompleted(completedEventFromManifest(manifest));
      if (this.options.deletePartsOnComplete || manifest.status === 'failed') await this.deleteSinkState(jobId);
      await this.forgetOpenJob(jobId);
      return;
    }
    const job = this.jobs.get(jobId);
    if (!job?.produced || this.completed.has(jobId)) return;
    const produced = job.produced;

    let parts = await this.listParts(jobId);
    let received = parts.reduce((sum, p) => sum + p.count, 0);
    job.partLines = received;
    if (received < this.checkThreshold(job)) return;

    if (parts.length > this.options.mergeFanIn) {
      parts = await this.compact(jobId, parts);
      received = parts.reduce((sum, p) => sum + p.count, 0);
    }

    // Pass 1: count distinct keys. Reading the parts twice is the price of never holding keys in memory.
    let prompts = 0;
    let badRows = 0;
    for await (const entry of this.merge(parts)) {
      if (entry.promptIndex < 0) badRows++;
      else prompts++;
    }
    if (prompts < produced.prompts || badRows < produced.badRows) {
      const missing = Math.max(0, produced.prompts - prompts) + Math.max(0, produced.badRows - badRows);
      job.nextCheckAt = received + missing;
      this.logger.debug({ jobId, prompts, badRows, missing, received }, `sink: ${jobId} not complete yet (${missing} missing)`);
      return;
    }
    if (prompts > produced.prompts || badRows > produced.badRows) {
      this.logger.warn(
        { jobId, prompts, badRows, produced: { prompts: produced.prompts, badRows: produced.badRows } },
        `sink: ${jobId} has more entries than its produced event announced`,
      );
    }

    // Pass 2: stream the outputs. manifest.json goes last: its presence is what "complete" means.
    const counters: MergeCounters = { read: 0, distinct: 0 };
    const out = new ObjectLineWriter(this.store, outputKey(jobId));
    const errors = new ObjectLineWriter(this.store, errorsKey(jobId));
    let stats: AssemblyStats;
    try {
      stats = await assembleJobOutput(this.merge(parts, counters), { output: (l) => out.writeLine(l), error: (l) => errors.writeLine(l) });
      await Promise.all([out.end(), errors.end()]);
    } catch (error) {
      out.abort(error as Error);
      errors.abort(error as Error);
      throw error;
    }
    const manifest = this.buildManifest(job, produced, stats, { received, distinct: counters.distinct, parts: parts.length });
    await retry(
      () => this.store.put(manifestKey(jobId), `${JSON.stringify(manifest, null, 2)}\n`, 'application/json'),
      this.s3Retry('put manifest'),
    );
    this.markCompleted(jobId);
    await this.publishCompleted(completedEventFromManifest(manifest));
    this.jobsCompleted++;
    this.metrics.jobsCompleted.inc();
    this.metrics.rowsWritten.inc(stats.rows);
    this.metrics.imagesWritten.inc(stats.images);
    this.logger.info(
      {
        jobId,
        rows: stats.rows,
        images: stats.images,
        errors: stats.errors,
        duplicates: received - counters.distinct,
        parts: parts.length,
      },
      `sink: job ${jobId} complete: ${stats.rows} rows, ${stats.images} images, ${stats.errors} errors → ${manifest.output.output}`,
    );
    if (this.options.deletePartsOnComplete) await this.deleteSinkState(jobId);
    await this.forgetOpenJob(jobId);
    try {
      this.deps.onJobCompleted?.(manifest);
    } catch (error) {
      this.logger.warn({ err: error }, `sink: onJobCompleted threw: ${describeError(error)}`);
    }
  }

  /**
   * A job that cannot complete: manifest.json with status `failed` and the reason (what the query and
   * `t2i run` show), its parts deleted, the job forgotten (late results are ignored), and a `failed`
   * event when the sink is the one that found out. A job that is complete already stays complete.
   */
  private async failJob(jobId: string): Promise<void> {
    const failure = this.failures.get(jobId);
    if (!failure) return;
    const existing = await retry(() => this.store.head(manifestKey(jobId)), this.s3Retry('head manifest'));
    let written: FailedJobManifest | undefined;
    if (!existing) {
      const job = this.jobs.get(jobId);
      const parts = await this.listParts(jobId);
      const iso = (t: number | undefined) => (t === undefined ? null : new Date(t).toISOString());
      const paramsJson = job?.produced?.paramsJson ?? job?.started?.paramsJson ?? null;
      const manifest: FailedJobManifest = {
        jobId,
        status: 'failed',
        reason: failure.reason,
        counts: {
          received: parts.reduce((sum, p) => sum + p.count, 0) + (job?.buffer.length ?? 0),
          prompts: job?.produced?.prompts ?? null,
          badRows: job?.produced?.badRows ?? null,
        },
        parameters: paramsJson === null ? null : parseOrText(paramsJson),
        source: job?.produced?.source ?? job?.started?.source ?? null,
        timings: { startedAt: iso(job?.started?.at), producedAt: iso(job?.produced?.at), failedAt: new Date().toISOString() },
        output: { manifest: this.store.uri(manifestKey(jobId)) },
      };
      await retry(
        () => this.store.put(manifestKey(jobId), `${JSON.stringify(manifest, null, 2)}\n`, 'application/json'),
        this.s3Retry('put manifest'),
      );
      this.logger.warn({ jobId, reason: failure.reason }, `sink: job ${jobId} failed: ${failure.reason}`);
      if (failure.announce) {
        const event = jobEvent(jobId, 'failed', { message: failure.reason, source: manifest.source });
        await retry(() => this.producer.send(this.topics.jobs, 'JobEvent', [{ key: jobId, value: event }]), { attempts: 8, maxMs: 5000 });
      }
      written = manifest;
    }
    this.failures.delete(jobId);
    this.markCompleted(jobId);
    await this.deleteSinkState(jobId);
    await this.forgetOpenJob(jobId);
    if (written) this.metrics.jobsFailed.inc();
    try {
      if (written) this.deps.onJobFailed?.(written);
    } catch (error) {
      this.logger.warn({ err: error }, `sink: onJobFailed threw: ${describeError(error)}`);
    }
  }

  private async forgetOpenJob(jobId: string): Promise<void> {
    await retry(() => deleteOpenJob(this.store, jobId), this.s3Retry('delete open-jobs entry')).catch((error: unknown) =>
      this.logger.warn(
        { err: error, jobId },
        `sink: could not delete the open-jobs entry of ${jobId} (the next start drops it): ${describeError(error)}`,
      ),
    );
  }

  private buildManifest(
    job: JobState,
    produced: JobEvent,
    stats: AssemblyStats,
    merge: { received: number; distinct: number; parts: number },
  ): JobManifest {
    const finishedAt = Date.now();
    const startedAt = job.started?.at ?? null;
    const totalMs = startedAt === null ? null : finishedAt - startedAt;
    const paramsJson = produced.paramsJson ?? job.started?.paramsJson ?? null;
    const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());
    return {
      jobId: job.jobId,
      status: 'complete',
      counts: {
        rows: stats.rows,
        inputRows: produced.rows + produced.badRows,
        prompts: produced.prompts,
        images: stats.images,
        errors: stats.errors,
        badRows: stats.badRows,
        failedPrompts: stats.failedPrompts,
        partialRows: stats.partialRows,
      },
      parameters: paramsJson === null ? null : parseOrText(paramsJson),
      model: stats.models.length === 1 ? (stats.models[0] as string) : null,
      models: stats.models,
      source: produced.source ?? job.started?.source ?? null,
      timings: {
        startedAt: iso(startedAt),
        producedAt: iso(produced.at),
        firstResultAt: iso(stats.firstResultAt),
        lastResultAt: iso(stats.lastResultAt),
        finishedAt: new Date(finishedAt).toISOString(),
        produceMs: startedAt === null ? null : produced.at - startedAt,
        totalMs,
        inferenceMsTotal: stats.inferenceMsTotal,
        imagesPerSecond: totalMs === null || totalMs <= 0 ? null : Math.round((stats.images / (totalMs / 1000)) * 1000) / 1000,
      },
      output: {
        output: this.store.uri(outputKey(job.jobId)),
        errors: this.store.uri(errorsKey(job.jobId)),
        manifest: this.store.uri(manifestKey(job.jobId)),
      },
      sink: { received: merge.received, distinct: merge.distinct, duplicatesDropped: merge.received - merge.distinct, parts: merge.parts },
    };
  }

  private async publishCompleted(event: JobEvent): Promise<void> {
    if (this.completedEvents.has(event.jobId)) return;
    await retry(() => this.producer.send(this.topics.jobs, 'JobEvent', [{ key: event.jobId, value: event }]), { attempts: 8, maxMs: 5000 });
    this.completedEvents.add(event.jobId);
  }

  /** Forgets a complete job: its buffer is dropped, its late messages will be ignored. */
  private markCompleted(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (job) {
      this.bufferedMessages -= job.buffer.length;
      this.bufferedBytes -= job.bufferBytes;
      this.jobs.delete(jobId);
    }
    this.completed.add(jobId);
    this.attemptQueue.delete(jobId);
  }

  private async deleteSinkState(jobId: string): Promise<void> {
    try {
      const keys: string[] = [];
      for await (const object of this.store.list(sinkPrefix(jobId))) keys.push(object.key);
      // Deepest first: servers with a filesystem backend (s3proxy) list folders as keys and want them empty.
      await this.deleteKeys(keys.sort().reverse());
    } catch (error) {
      this.logger.warn({ err: error, jobId }, `sink: could not delete ${sinkPrefix(jobId)} (harmless leftovers): ${describeError(error)}`);
    }
  }

  private async listParts(jobId: string): Promise<PartRef[]> {
    return retry(async () => {
      const parts: PartRef[] = [];
      for await (const object of this.store.list(partsPrefix(jobId))) {
        const parsed = parsePartKey(object.key);
        if (parsed) parts.push({ key: object.key, count: parsed.count });
      }
      return parts.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    }, this.s3Retry('list parts'));
  }

  private merge(parts: PartRef[], counters?: MergeCounters): AsyncGenerator<PartEntry> {
    return mergeSortedParts(
      parts.map((part) => ({ name: part.key, lines: this.partLines(part.key) })),
      counters,
    );
  }

  private async *partLines(key: string): AsyncGenerator<string> {
    const stream = await retry(() => this.store.getStream(key), this.s3Retry('get part'));
    // A part deleted under us (compacted by another instance): fail the attempt, the next one re-lists.
    if (!stream) throw new T2iError('S3_UNAVAILABLE', `sink part ${key} vanished`, { retriable: true });
    yield* readLines(stream);
  }

  /**
   * Merges parts until at most mergeFanIn remain (each open part holds an S3 connection). Each pass merges
   * the smallest parts, only as many as needed (at most mergeFanIn), so a job spilled in P parts rewrites
   * little more than its P − mergeFanIn + 1 smallest parts. The merged part's key keeps the SUM of its
   * sources' counts: counts stay "lines received", so the completion threshold is unchanged. A crash
   * between writing the merged part and deleting its sources leaves duplicates, which the merge drops.
   */
  private async compact(jobId: string, parts: PartRef[]): Promise<PartRef[]> {
    const fanIn = this.options.mergeFanIn;
    let remaining = [...parts];
    while (remaining.length > fanIn) {
      remaining.sort((a, b) => a.count - b.count || (a.key < b.key ? -1 : 1));
      const take = Math.min(fanIn, remaining.length - fanIn + 1);
      const group = remaining.slice(0, take);
      const count = group.reduce((sum, p) => sum + p.count, 0);
      const key = partKey(jobId, this.newId(), count);
      const writer = new ObjectLineWriter(this.store, key);
      try {
        for await (const entry of this.merge(group)) await writer.writeLine(entry.line);
        await writer.end();
      } catch (error) {
        writer.abort(error as Error);
        throw error;
      }
      await this.deleteKeys(group.map((p) => p.key));
      this.logger.info({ jobId, merged: group.length, lines: count, into: key }, `sink: compacted ${group.length} parts of ${jobId}`);
      remaining = [...remaining.slice(take), { key, count }];
    }
    return remaining;
  }

  /**
   * One DeleteObject per key (a job has tens of parts, not thousands): DeleteObjects is refused by some
   * S3-compatible servers (s3proxy answers 501 to the checksum header the SDK sends with it).
   */
  private async deleteKeys(keys: string[]): Promise<void> {
    for (const key of keys) {
      await retry(() => this.store.delete(key), this.s3Retry('delete'));
    }
  }

  private s3Retry(what: string) {
    return {
      attempts: 6,
      maxMs: 5000,
      onRetry: (error: unknown, attempt: number, delayMs: number) =>
        this.logger.warn({ attempt, delayMs }, `sink: S3 ${what} failed, retrying in ${delayMs} ms: ${describeError(error)}`),
    };
  }
}

/** The sink service as a library: `await createSink({...}).start()`, then `close()`. */
export function createSink(options: SinkOptions): Sink {
  return new Sink(options);
}

/** The `completed` JobEvent that goes with a manifest. */
export function completedEventFromManifest(manifest: JobManifest): JobEvent {
  return jobEvent(manifest.jobId, 'completed', {
    at: Date.parse(manifest.timings.finishedAt),
    rows: manifest.counts.rows,
    prompts: manifest.counts.prompts,
    badRows: manifest.counts.badRows,
    images: manifest.counts.images,
    errors: manifest.counts.errors,
    source: manifest.source,
    paramsJson:
      manifest.parameters === null
        ? null
        : typeof manifest.parameters === 'string'
          ? manifest.parameters
          : JSON.stringify(manifest.parameters),
    outputUri: manifest.output.output,
  });
}

function parseOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  });
  await Promise.all(workers);
}
