import type { KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { AvroCodec } from '../common/avro.ts';
import { PartitionConsumer, type PartitionBatch } from '../common/partition-consumer.ts';
import { topicNames, type TopicNames } from '../common/config.ts';
import { describeError } from '../common/errors.ts';
import { ensureTopics, topicLayout, topicOffsets } from '../common/kafka.ts';
import { Lifecycle } from '../common/lifecycle.ts';
import { MessageProducer } from '../common/message-producer.ts';
import { JOB_ID_PATTERN, type DeadLetter, type ImageResult } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { extractTraceContext, startProcessSpan } from '../common/telemetry.ts';
import { Completion } from './completion.ts';
import { JobBook } from './job-book.ts';
import { JobEvents } from './job-events.ts';
import { JobParts } from './job-parts.ts';
import { compileSinkOptions, type CompiledSinkOptions, type SinkOptions } from './options.ts';
import { errorEntryLine, imageEntryLine } from './part-format.ts';
import { createSinkMetrics } from './sink-metrics.ts';
import { Spill } from './spill.ts';
import type { SinkState, SinkStats } from './types.ts';

/*
 * The sink: results and dead letters in, one output.jsonl / errors.jsonl / manifest.json per job out, exact
 * across restarts with bounded memory. This file holds the consumers, ingest and the lifecycle; spilling,
 * job events, completion, parts and manifests have files of their own (services/sink/README.md says how
 * they fit together and why nothing is lost).
 */

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
  private readonly metrics: ReturnType<typeof createSinkMetrics>;

  private readonly book = new JobBook();
  private readonly parts: JobParts;
  private readonly events: JobEvents;
  private readonly completion: Completion;
  private dataConsumer?: PartitionConsumer;
  private readonly spill: Spill;
  private serialTail: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private stopping = false;
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
    this.parts = new JobParts(deps.store, deps.logger, this.options.mergeFanIn);
    const isStopping = () => this.stopping;
    this.events = new JobEvents({
      kafka: deps.kafka,
      kafkaConfig: deps.config.kafka,
      codec: deps.codec,
      store: deps.store,
      parts: this.parts,
      logger: deps.logger,
      topics: this.topics,
      book: this.book,
      groupId: this.options.groupId,
      sessionTimeoutMs: this.options.sessionTimeoutMs,
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
      orphanJobMs: this.options.orphanJobMs,
      isStopping,
      enqueue: (jobId) => this.completion.enqueue(jobId),
      kick: () => this.completion.kick(),
      markCompleted: (jobId) => this.completion.markCompleted(jobId),
      onUndecodable: () => this.metrics.blocked.set(this.pausedPartitions()),
    });
    this.spill = new Spill({
      book: this.book,
      parts: this.parts,
      store: deps.store,
      logger: deps.logger,
      metrics: this.metrics,
      uploadConcurrency: this.options.uploadConcurrency,
      commit: async () => {
        await this.dataConsumer?.commitSettled();
      },
      enqueue: (jobId) => this.completion.enqueue(jobId),
    });
    this.completion = new Completion({
      book: this.book,
      parts: this.parts,
      store: deps.store,
      producer: this.producer,
      topics: this.topics,
      logger: deps.logger,
      metrics: this.metrics,
      deletePartsOnComplete: this.options.deletePartsOnComplete,
      caughtUp: this.events.caughtUp,
      isStopping,
      forgetOpenJob: (jobId) => this.events.forgetOpenJob(jobId),
      ...(deps.onJobCompleted ? { onJobCompleted: deps.onJobCompleted } : {}),
      ...(deps.onJobFailed ? { onJobFailed: deps.onJobFailed } : {}),
    });
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
    return (
      this.getState() === 'RUNNING' &&
      this.dataConsumer?.isReady() === true &&
      this.events.isCaughtUp() &&
      this.events.pausedPartitions === 0
    );
  }

  stats(): SinkStats {
    return {
      state: this.getState(),
      ready: this.isReady(),
      jobsInFlight: this.book.jobs.size,
      jobsCompleted: this.completion.completedCount,
      bufferedMessages: this.book.bufferedMessages,
      bufferedBytes: this.book.bufferedBytes,
      partsWritten: this.spill.partsWritten,
      blockedPartitions: this.pausedPartitions(),
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
        this.events.setTargets(await topicOffsets(admin, this.topics.jobs));
      } finally {
        await admin.disconnect().catch(() => {});
      }
      await this.producer.connect();
      await this.events.start();
      this.events.done.catch((error: unknown) => this.doneReject(error));
      await this.startDataConsumer();
      this.timer = setInterval(() => this.tick(), this.options.flushIntervalMs);
      this.timer.unref();
      void this.events.restoreOpenJobs();
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
      this.events.markCaughtUp(); // releases an attempt loop still waiting for the job events
      if (options.flush !== false) {
        try {
          await this.serial(() => this.spill.flush());
        } catch (error) {
          this.logger.warn({ err: error }, `sink: final spill failed (the messages will be read again): ${describeError(error)}`);
        }
      }
      try {
        await this.completion.idle();
      } catch {
        // logged by the loop
      }
      await Promise.all(
        [this.dataConsumer?.stop(), this.events.disconnect()].map((stopped) =>
          stopped?.catch((error: unknown) => {
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

  private async startDataConsumer(): Promise<void> {
    this.dataConsumer = new PartitionConsumer({
      kafka: this.deps.kafka,
      kafkaConfig: this.config.kafka,
      logger: this.logger,
      service: 'sink',
      groupId: this.options.groupId,
      topics: [this.topics.results, this.topics.errors],
      sessionTimeoutMs: this.options.sessionTimeoutMs,
      // Smaller fetches than kafkajs's 10 MB: each fetched message becomes several objects until its batch is done.
      maxBytes: 2 * 1024 * 1024,
      maxBytesPerPartition: 512 * 1024,
      maxWaitTimeInMs: FETCH_MAX_WAIT_MS,
      // Offsets are committed after the spill that holds their messages (spill.ts), not per batch.
      awaitEffects: false,
      commitIntervalMs: 0,
      beforeBatch: (messages) => this.codec.loadWriterSchemas(messages),
      lag: this.metrics.lag,
      onUndecodable: (topic) => {
        this.metrics.messages.inc({ kind: topic === this.topics.results ? 'result' : 'error', outcome: 'undecodable' });
        this.metrics.blocked.set(this.pausedPartitions());
      },
    });
    this.dataConsumer.done.catch((error: unknown) => this.doneReject(error));
    await this.dataConsumer.start((batch) => this.handleBatch(batch));
  }

  /** Partitions paused on a message this version cannot decode, in both consumers. */
  private pausedPartitions(): number {
    return (this.dataConsumer?.pausedPartitions ?? 0) + this.events.pausedPartitions;
  }

  // ---------------------------------------------------------------- ingest

  /** Runs `fn` after every earlier serial step: ingest and spills never interleave, so buffers and offsets agree. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serialTail.then(fn);
    this.serialTail = run.catch(() => undefined);
    return run;
  }

  private async handleBatch(batch: PartitionBatch): Promise<void> {
    await this.serial(async () => {
      let spillSoon = false;
      let last: string | undefined;
      // Offsets are tracked before each spill and at the end, not per message: fewer allocations.
      const track = () => {
        if (last !== undefined) batch.track(last, this.spill.spilled());
        last = undefined;
      };
      for (const message of batch.messages) {
        if (this.stopping || batch.shouldStop()) break;
        // Bounded memory: spill before taking more. A failed spill throws, and kafkajs fetches this
        // batch again from the first offset not tracked.
        if (this.book.bufferedMessages >= this.options.maxBufferedMessages || this.book.bufferedBytes >= this.options.maxBufferedBytes) {
          track();
          await this.spill.flush(batch.heartbeat);
          spillSoon = false;
        }
        let outcome: boolean;
        try {
          outcome = await this.ingest(batch.topic, batch.partition, message);
        } catch (error) {
          if (!(error instanceof Undecodable)) throw error;
          batch.block(message, error.cause);
          break;
        }
        spillSoon = outcome || spillSoon;
        last = message.offset;
      }
      track();
      // A job that may now be complete is spilled at once rather than at the next tick.
      if (spillSoon && !this.stopping) await this.spill.flush(batch.heartbeat);
    });
  }

  /** Buffers one result or dead letter; true when its job may now be complete. Throws Undecodable. */
  private async ingest(topic: string, partition: number, message: KafkaMessage): Promise<boolean> {
    const isResult = topic === this.topics.results;
    let value: ImageResult | DeadLetter;
    try {
      value = isResult
        ? this.codec.decode('ImageResult', message.value, message.headers)
        : this.codec.decode('DeadLetter', message.value, message.headers);
    } catch (error) {
      throw new Undecodable(error);
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
      ? startProcessSpan(
          { topic, partition, consumerGroup: this.options.groupId },
          message,
          value as ImageResult,
          extractTraceContext(message.headers as Record<string, unknown> | undefined),
        )
      : undefined;
    try {
      const known = this.book.jobs.get(value.jobId);
      const job = known?.ready ? known : await this.completion.jobForData(value.jobId);
      if (!job) {
        this.metrics.messages.inc({ kind: isResult ? 'result' : 'error', outcome: 'ignored' });
        span?.setAttribute('t2i.ignored', true);
        return false;
      }
      const line = isResult ? imageEntryLine(value as ImageResult) : errorEntryLine(value as DeadLetter);
      job.buffer.push(line);
      job.bufferBytes += line.length;
      this.book.bufferedMessages++;
      this.book.bufferedBytes += line.length;
      this.metrics.messages.inc({ kind: isResult ? 'result' : 'error', outcome: 'buffered' });
      return job.produced !== undefined && job.partLines + job.buffer.length >= this.book.checkThreshold(job);
    } finally {
      span?.end();
    }
  }

  // ---------------------------------------------------------------- spill

  /** Periodic: spill what is buffered (so offsets get committed) and retry failed completion attempts. */
  private tick(): void {
    if (this.stopping) return;
    if (this.book.bufferedMessages > 0 || this.spill.hasPendingOffsets()) {
      this.serial(() => this.spill.flush()).catch((error: unknown) =>
        this.logger.warn({ err: error }, `sink: spill failed, will retry: ${describeError(error)}`),
      );
    }
    for (const job of this.book.jobs.values()) {
      if (job.retryAttempt) {
        job.retryAttempt = false;
        this.completion.enqueue(job.jobId);
      }
    }
    this.events.tick();
  }
}

/** A result or dead letter this version cannot decode: its partition pauses (services/common/undecodable.ts). */
class Undecodable extends Error {
  constructor(cause: unknown) {
    super('undecodable message', { cause });
  }
}

/** The sink service as a library: `await createSink({...}).start()`, then `close()`. */
export function createSink(options: SinkOptions): Sink {
  return new Sink(options);
}
