/**
 * Completion: one attempt at a time, in its own loop so ingest goes on meanwhile. An attempt counts the
 * distinct entries in a job's parts (a streaming merge); when the job has them all, it streams
 * output.jsonl and errors.jsonl, writes manifest.json LAST (its presence is what "complete" means), then
 * publishes the `completed` event. A job marked failed gets a failed manifest instead. See sink.ts for
 * why this is exact across restarts.
 */
import type { Logger } from 'pino';
import type { TopicNames } from '../common/config.ts';
import { describeError } from '../common/errors.ts';
import type { MessageProducer } from '../common/message-producer.ts';
import { jobEvent, type JobEvent } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { retry } from '../common/retry.ts';
import { errorsKey, manifestKey, outputKey } from '../common/bucket-layout.ts';
import type { JobBook, JobState } from './job-book.ts';
import { assembleJobOutput, type AssemblyStats } from './job-output.ts';
import type { JobParts } from './job-parts.ts';
import { completedEventFromManifest, completeManifest, failedManifest } from './manifest.ts';
import type { MergeCounters } from './merge.ts';
import { ObjectLineWriter } from './object-writer.ts';
import type { createSinkMetrics } from './sink-metrics.ts';
import type { FailedJobManifest, JobManifest } from './types.ts';

export interface CompletionDeps {
  book: JobBook;
  parts: JobParts;
  store: ObjectStore;
  producer: MessageProducer;
  topics: TopicNames;
  logger: Logger;
  metrics: ReturnType<typeof createSinkMetrics>;
  deletePartsOnComplete: boolean;
  /** Attempts wait until the job events have been read up to where they were at start. */
  caughtUp: Promise<void>;
  isStopping: () => boolean;
  /** Drops a finished job from the open-jobs ledger (job-events.ts). */
  forgetOpenJob: (jobId: string) => Promise<void>;
  onJobCompleted?: (manifest: JobManifest) => void;
  onJobFailed?: (manifest: FailedJobManifest) => void;
}

export class Completion {
  private readonly queue = new Set<string>();
  private loop: Promise<void> | undefined;
  /** Jobs this process completed. */
  completedCount = 0;

  constructor(private readonly deps: CompletionDeps) {}

  /** Puts a job up for an attempt (once in the queue however often asked). */
  enqueue(jobId: string): void {
    this.queue.add(jobId);
    this.kick();
  }

  /** The attempt loop in progress (close() waits for it). */
  idle(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  /** Starts the loop unless it runs. */
  kick(): void {
    if (this.loop || this.deps.isStopping()) return;
    this.loop = (async () => {
      await this.deps.caughtUp;
      while (!this.deps.isStopping() && this.queue.size > 0) {
        const jobId = this.queue.values().next().value as string;
        this.queue.delete(jobId);
        try {
          if (this.deps.book.failures.has(jobId)) await this.fail(jobId);
          else await this.attempt(jobId);
        } catch (error) {
          this.deps.logger.warn({ err: error, jobId }, `sink: completion attempt for ${jobId} failed, will retry: ${describeError(error)}`);
          const job = this.deps.book.jobs.get(jobId);
          if (job) job.retryAttempt = true;
        }
      }
    })().finally(() => {
      this.loop = undefined;
      if (this.queue.size > 0 && !this.deps.isStopping()) this.kick();
    });
  }

  /** The state of a job that takes data, loading it from the bucket on first contact; undefined when the job is complete. */
  async jobForData(jobId: string): Promise<JobState | undefined> {
    if (this.deps.book.completed.has(jobId)) return undefined;
    const job = this.deps.book.state(jobId);
    if (job.ready) return job;
    job.loaded ??= this.loadJob(job).catch((error: unknown) => {
      job.loaded = undefined;
      throw error;
    });
    await job.loaded;
    if (this.deps.book.completed.has(jobId)) return undefined;
    job.ready = true;
    return job;
  }

  private async loadJob(job: JobState): Promise<void> {
    const manifest = await retry(() => this.deps.store.head(manifestKey(job.jobId)), this.deps.parts.s3Retry('head manifest'));
    if (manifest) {
      this.markCompleted(job.jobId);
      // Its `completed` event may have been lost to a crash right after the manifest: the attempt re-publishes it.
      this.enqueue(job.jobId);
      return;
    }
    const parts = await this.deps.parts.list(job.jobId);
    job.partLines = parts.reduce((sum, p) => sum + p.count, 0);
  }

  /** Forgets a complete job (see JobBook.markCompleted) and any attempt queued for it. */
  markCompleted(jobId: string): void {
    this.deps.book.markCompleted(jobId);
    this.queue.delete(jobId);
  }

  private async attempt(jobId: string): Promise<void> {
    const { book, parts, store, logger, metrics } = this.deps;
    if (book.completedEvents.has(jobId)) return;
    const existing = await retry(() => store.get(manifestKey(jobId)), parts.s3Retry('get manifest'));
    if (existing) {
      // Complete already (by us before a crash, or by another instance): make sure its event exists, tidy up.
      this.markCompleted(jobId);
      const manifest = JSON.parse(existing.toString('utf8')) as JobManifest | FailedJobManifest;
      if (manifest.status === 'complete') await this.publishCompleted(completedEventFromManifest(manifest));
      if (this.deps.deletePartsOnComplete || manifest.status === 'failed') await parts.deleteSinkState(jobId);
      await this.deps.forgetOpenJob(jobId);
      return;
    }
    const job = book.jobs.get(jobId);
    if (!job?.produced || book.completed.has(jobId)) return;
    const produced = job.produced;

    let refs = await parts.list(jobId);
    let received = refs.reduce((sum, p) => sum + p.count, 0);
    job.partLines = received;
    if (received < book.checkThreshold(job)) return;

    refs = await parts.compact(jobId, refs);
    received = refs.reduce((sum, p) => sum + p.count, 0);

    // Pass 1: count distinct keys. Reading the parts twice is the price of never holding keys in memory.
    let prompts = 0;
    let badRows = 0;
    for await (const entry of parts.merge(refs)) {
      if (entry.promptIndex < 0) badRows++;
      else prompts++;
    }
    if (prompts < produced.prompts || badRows < produced.badRows) {
      const missing = Math.max(0, produced.prompts - prompts) + Math.max(0, produced.badRows - badRows);
      job.nextCheckAt = received + missing;
      logger.debug({ jobId, prompts, badRows, missing, received }, `sink: ${jobId} not complete yet (${missing} missing)`);
      return;
    }
    if (prompts > produced.prompts || badRows > produced.badRows) {
      logger.warn(
        { jobId, prompts, badRows, produced: { prompts: produced.prompts, badRows: produced.badRows } },
        `sink: ${jobId} has more entries than its produced event announced`,
      );
    }

    // Pass 2: stream the outputs. manifest.json goes last: its presence is what "complete" means.
    const counters: MergeCounters = { read: 0, distinct: 0 };
    const out = new ObjectLineWriter(store, outputKey(jobId));
    const errors = new ObjectLineWriter(store, errorsKey(jobId));
    let stats: AssemblyStats;
    try {
      stats = await assembleJobOutput(parts.merge(refs, counters), { output: (l) => out.writeLine(l), error: (l) => errors.writeLine(l) });
      await Promise.all([out.end(), errors.end()]);
    } catch (error) {
      out.abort(error as Error);
      errors.abort(error as Error);
      throw error;
    }
    const manifest = completeManifest(job, produced, stats, { received, distinct: counters.distinct, parts: refs.length }, store);
    await retry(
      () => store.put(manifestKey(jobId), `${JSON.stringify(manifest, null, 2)}\n`, 'application/json'),
      parts.s3Retry('put manifest'),
    );
    this.markCompleted(jobId);
    await this.publishCompleted(completedEventFromManifest(manifest));
    this.completedCount++;
    metrics.jobsCompleted.inc();
    metrics.rowsWritten.inc(stats.rows);
    metrics.imagesWritten.inc(stats.images);
    logger.info(
      { jobId, rows: stats.rows, images: stats.images, errors: stats.errors, duplicates: received - counters.distinct, parts: refs.length },
      `sink: job ${jobId} complete: ${stats.rows} rows, ${stats.images} images, ${stats.errors} errors → ${manifest.output.output}`,
    );
    if (this.deps.deletePartsOnComplete) await parts.deleteSinkState(jobId);
    await this.deps.forgetOpenJob(jobId);
    try {
      this.deps.onJobCompleted?.(manifest);
    } catch (error) {
      logger.warn({ err: error }, `sink: onJobCompleted threw: ${describeError(error)}`);
    }
  }

  /**
   * A job that cannot complete: manifest.json with status `failed` and the reason (what the query and
   * `t2i run` show), its parts deleted, the job forgotten (late results are ignored), and a `failed`
   * event when the sink is the one that found out. A job that is complete already stays complete.
   */
  private async fail(jobId: string): Promise<void> {
    const { book, parts, store, logger } = this.deps;
    const failure = book.failures.get(jobId);
    if (!failure) return;
    const existing = await retry(() => store.head(manifestKey(jobId)), parts.s3Retry('head manifest'));
    let written: FailedJobManifest | undefined;
    if (!existing) {
      const received = (await parts.list(jobId)).reduce((sum, p) => sum + p.count, 0);
      const manifest = failedManifest(jobId, failure, book.jobs.get(jobId), received, store);
      await retry(
        () => store.put(manifestKey(jobId), `${JSON.stringify(manifest, null, 2)}\n`, 'application/json'),
        parts.s3Retry('put manifest'),
      );
      logger.warn({ jobId, reason: failure.reason }, `sink: job ${jobId} failed: ${failure.reason}`);
      if (failure.announce) {
        const event = jobEvent(jobId, 'failed', { message: failure.reason, source: manifest.source });
        await retry(() => this.deps.producer.send(this.deps.topics.jobs, 'JobEvent', [{ key: jobId, value: event }]), {
          attempts: 8,
          maxMs: 5000,
        });
      }
      written = manifest;
    }
    book.failures.delete(jobId);
    this.markCompleted(jobId);
    await parts.deleteSinkState(jobId);
    await this.deps.forgetOpenJob(jobId);
    if (written) this.deps.metrics.jobsFailed.inc();
    try {
      if (written) this.deps.onJobFailed?.(written);
    } catch (error) {
      logger.warn({ err: error }, `sink: onJobFailed threw: ${describeError(error)}`);
    }
  }

  private async publishCompleted(event: JobEvent): Promise<void> {
    if (this.deps.book.completedEvents.has(event.jobId)) return;
    await retry(() => this.deps.producer.send(this.deps.topics.jobs, 'JobEvent', [{ key: event.jobId, value: event }]), {
      attempts: 8,
      maxMs: 5000,
    });
    this.deps.book.completedEvents.add(event.jobId);
  }
}
