/**
 * The job events (started / produced / completed / failed) as the sink follows them: the one-partition
 * jobs topic, re-read from the beginning at every start by a private consumer group that never commits,
 * "caught up" once it reaches where the topic was at start; and the open-jobs ledger in the bucket
 * (open-jobs.ts), which keeps open jobs' events past the topic's retention. Also fails jobs whose results
 * arrive without any event (orphans).
 */
import { randomBytes } from 'node:crypto';
import type { Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import type { AvroCodec } from '../common/avro.ts';
import type { KafkaConfig, TopicNames } from '../common/config.ts';
import { describeError } from '../common/errors.ts';
import { JOB_ID_PATTERN, type JobEvent } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { PartitionConsumer } from '../common/partition-consumer.ts';
import { retry } from '../common/retry.ts';
import type { JobBook } from './job-book.ts';
import type { JobParts } from './job-parts.ts';
import { deleteOpenJob, readOpenJobs, writeOpenJob } from './open-jobs.ts';

export interface JobEventsDeps {
  kafka: Kafka;
  kafkaConfig: KafkaConfig;
  codec: AvroCodec;
  store: ObjectStore;
  parts: JobParts;
  logger: Logger;
  topics: TopicNames;
  book: JobBook;
  groupId: string;
  sessionTimeoutMs: number;
  maxWaitTimeInMs: number;
  orphanJobMs: number;
  isStopping: () => boolean;
  /** Puts a job up for a completion attempt, and starts the attempt loop (completion.ts). */
  enqueue: (jobId: string) => void;
  kick: () => void;
  /** Forgets a complete job. */
  markCompleted: (jobId: string) => void;
  /** An undecodable event (this reader pauses its partition): for the service's metrics. */
  onUndecodable: (topic: string) => void;
}

export class JobEvents {
  private consumer: PartitionConsumer | undefined;
  private caughtUpFlag = false;
  private resolveCaughtUp: () => void = () => {};
  /** Resolves once the events have been read up to where the topic was at start. */
  readonly caughtUp = new Promise<void>((resolve) => (this.resolveCaughtUp = resolve));
  private targets = new Map<number, bigint>();
  private idleTimer: NodeJS.Timeout | undefined;
  private ledgerRestored = false;
  private ledgerRestoring: Promise<void> | undefined;
  /** Per job, the ledger write or delete in flight (see recordOpenJob). */
  private readonly ledgerSteps = new Map<string, Promise<void>>();

  constructor(private readonly deps: JobEventsDeps) {}

  isCaughtUp(): boolean {
    return this.caughtUpFlag;
  }

  /** Where the topic ends now, per partition: reading up to there is "caught up". None: caught up already. */
  setTargets(offsets: { partition: number; high: string; low: string }[]): void {
    for (const o of offsets) if (BigInt(o.high) > BigInt(o.low)) this.targets.set(o.partition, BigInt(o.high));
    if (this.targets.size === 0) this.markCaughtUp();
  }

  async start(): Promise<void> {
    const { deps } = this;
    // A private group that never commits: every start re-reads the (small, one-partition) jobs topic.
    const consumer = new PartitionConsumer({
      kafka: deps.kafka,
      kafkaConfig: deps.kafkaConfig,
      logger: deps.logger,
      service: 'sink job events',
      groupId: `${deps.groupId}-jobs-${randomBytes(6).toString('hex')}`,
      topics: [deps.topics.jobs],
      sessionTimeoutMs: deps.sessionTimeoutMs,
      maxWaitTimeInMs: deps.maxWaitTimeInMs,
      awaitEffects: false,
      commitIntervalMs: 0,
      commits: false,
      beforeBatch: (messages) => deps.codec.loadWriterSchemas(messages),
      onUndecodable: (topic) => deps.onUndecodable(topic),
      // Fallback for a topic whose high watermark is never reached by a data message (e.g. a trailing
      // transaction marker): quiet for a while after joining means caught up.
      onJoin: () => this.armIdleTimer(),
    });
    this.consumer = consumer;
    await consumer.start(async (batch) => {
      for (const message of batch.messages) {
        if (batch.shouldStop()) return;
        const undecodable = this.handle(message);
        if (undecodable) {
          batch.block(message, undecodable.error);
          return;
        }
        batch.track(message.offset, true);
        const target = this.targets.get(batch.partition);
        if (target !== undefined && BigInt(message.offset) + 1n >= target) {
          this.targets.delete(batch.partition);
          if (this.targets.size === 0) this.markCaughtUp();
        }
        if (!this.caughtUpFlag) this.armIdleTimer();
      }
    });
  }

  /** Rejects when the job-events consumer stopped for good. */
  get done(): Promise<void> {
    return this.consumer?.done ?? Promise.resolve();
  }

  /** Partitions paused on an event this version cannot decode. */
  get pausedPartitions(): number {
    return this.consumer?.pausedPartitions ?? 0;
  }

  async disconnect(): Promise<void> {
    await this.consumer?.stop();
  }

  private armIdleTimer(): void {
    if (this.caughtUpFlag) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.markCaughtUp(), 3000);
    this.idleTimer.unref();
  }

  /** Also called by close(): releases an attempt loop still waiting for the events. */
  markCaughtUp(): void {
    if (this.caughtUpFlag) return;
    this.caughtUpFlag = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.resolveCaughtUp();
  }

  /** Applies one event; returns the error of an event it cannot decode (the caller pauses the partition). */
  private handle(message: KafkaMessage): { error: unknown } | undefined {
    const { book, logger } = this.deps;
    let event: JobEvent;
    try {
      event = this.deps.codec.decode('JobEvent', message.value, message.headers);
    } catch (error) {
      return { error };
    }
    if (!JOB_ID_PATTERN.test(event.jobId)) return undefined;
    switch (event.type) {
      case 'started':
        if (book.completed.has(event.jobId)) {
          // The id was used before and is started again (`t2i produce --force` deleted the old job first).
          book.completed.delete(event.jobId);
          book.completedEvents.delete(event.jobId);
        }
        book.failures.delete(event.jobId);
        book.state(event.jobId).started = event;
        this.recordOpenJob(event.jobId);
        break;
      case 'produced':
        if (!book.completed.has(event.jobId)) {
          book.state(event.jobId).produced = event;
          this.recordOpenJob(event.jobId);
          this.deps.enqueue(event.jobId);
        }
        break;
      case 'completed':
        book.completedEvents.add(event.jobId);
        this.deps.markCompleted(event.jobId);
        break;
      case 'failed':
        if (!book.completed.has(event.jobId) && !book.failures.has(event.jobId)) {
          logger.warn({ jobId: event.jobId, message: event.message }, `sink: job ${event.jobId} reported failed`);
          book.failures.set(event.jobId, { reason: event.message ?? 'its producer reported it failed', announce: false });
          this.deps.enqueue(event.jobId);
        }
        break;
    }
    return undefined;
  }

  // ---------------------------------------------------------------- open-jobs ledger (open-jobs.ts)

  /**
   * Live events of open jobs go to the ledger; events replayed at start are reconciled by restoreOpenJobs.
   * A job's writes run one after another and each writes the job's state at that moment, so the last
   * one holds its latest events (two PUTs in flight at once could land in either order).
   */
  private recordOpenJob(jobId: string): void {
    if (!this.ledgerRestored) return;
    this.inOrder(jobId, async () => {
      const job = this.deps.book.jobs.get(jobId);
      if (!job) return;
      const record = { jobId, ...(job.started ? { started: job.started } : {}), ...(job.produced ? { produced: job.produced } : {}) };
      await retry(() => writeOpenJob(this.deps.store, record), this.deps.parts.s3Retry('write open-jobs ledger')).catch((error: unknown) =>
        this.deps.logger.warn(
          { err: error, jobId },
          `sink: could not record open job ${jobId} (the jobs topic still has its events): ${describeError(error)}`,
        ),
      );
    });
  }

  async forgetOpenJob(jobId: string): Promise<void> {
    await this.inOrder(jobId, () =>
      retry(() => deleteOpenJob(this.deps.store, jobId), this.deps.parts.s3Retry('delete open-jobs entry')).catch((error: unknown) =>
        this.deps.logger.warn(
          { err: error, jobId },
          `sink: could not delete the open-jobs entry of ${jobId} (the next start drops it): ${describeError(error)}`,
        ),
      ),
    );
  }

  /** Runs `step` after the job's earlier ledger steps (none of which reject). */
  private inOrder(jobId: string, step: () => Promise<void>): Promise<void> {
    const next = (this.ledgerSteps.get(jobId) ?? Promise.resolve()).then(step);
    this.ledgerSteps.set(jobId, next);
    void next.finally(() => {
      if (this.ledgerSteps.get(jobId) === next) this.ledgerSteps.delete(jobId);
    });
    return next;
  }

  /**
   * Once the job events have caught up: takes back the events of open jobs that the jobs topic no longer
   * holds (retention), records the open jobs the ledger lacks, drops entries of finished jobs, and puts
   * every open job up for a completion attempt. Retried by tick() until it succeeds.
   */
  restoreOpenJobs(): Promise<void> {
    const { book, store, parts, logger } = this.deps;
    this.ledgerRestoring ??= (async () => {
      await this.caughtUp;
      if (this.deps.isStopping()) return;
      const records = await retry(
        () => readOpenJobs(store, (key, error) => logger.warn({ err: error, key }, `sink: unreadable open-jobs entry ${key}`)),
        parts.s3Retry('list open-jobs ledger'),
      );
      const listed = new Set<string>();
      for (const record of records) {
        listed.add(record.jobId);
        if (book.completed.has(record.jobId)) {
          await retry(() => deleteOpenJob(store, record.jobId), parts.s3Retry('delete open-jobs entry'));
          continue;
        }
        const job = book.state(record.jobId);
        if (!job.started && record.started) job.started = record.started;
        if (!job.produced && record.produced) job.produced = record.produced;
        this.deps.enqueue(record.jobId);
      }
      this.ledgerRestored = true;
      for (const job of book.jobs.values()) {
        if (!listed.has(job.jobId) && (job.started || job.produced)) this.recordOpenJob(job.jobId);
      }
      this.deps.kick();
    })().catch((error: unknown) => {
      this.ledgerRestoring = undefined;
      logger.warn({ err: error }, `sink: could not read the open-jobs ledger, will retry: ${describeError(error)}`);
    });
    return this.ledgerRestoring;
  }

  /** Periodic: restore the ledger until it worked, and fail orphan jobs. */
  tick(): void {
    if (this.caughtUpFlag && !this.ledgerRestored) void this.restoreOpenJobs();
    this.failOrphans();
  }

  /** Results with no started/produced event for orphanJobMs: the job cannot complete, so it fails. */
  private failOrphans(): void {
    if (!this.ledgerRestored) return;
    const { book, orphanJobMs, topics } = this.deps;
    const now = Date.now();
    for (const job of book.jobs.values()) {
      if (job.started || job.produced || book.failures.has(job.jobId) || now - job.firstSeenAt < orphanJobMs) continue;
      const minutes = Math.round(orphanJobMs / 6000) / 10;
      book.failures.set(job.jobId, {
        reason: `results arrived for job ${job.jobId}, but no started or produced event did (on the ${topics.jobs} topic or in the sink's open-jobs ledger) within ${minutes} min: it was not produced by t2i produce, or its events were lost`,
        announce: true,
      });
      this.deps.enqueue(job.jobId);
    }
  }
}
