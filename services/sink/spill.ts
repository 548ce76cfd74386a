/**
 * Spilling: every job's buffered lines become one sorted, de-duplicated part in the bucket, and only then
 * does the effect that the consumer tracks for everything ingested so far resolve, so their offsets get
 * committed (a committed offset never covers a message that is only in memory). A failed spill puts the
 * lines back and leaves the effect pending until a later spill succeeds, so nothing is lost.
 */
import type { Logger } from 'pino';
import { describeError } from '../common/errors.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { retry } from '../common/retry.ts';
import type { JobBook, JobState } from './job-book.ts';
import type { JobParts } from './job-parts.ts';
import { sortAndDedupe } from './merge.ts';
import type { createSinkMetrics } from './sink-metrics.ts';

export interface SpillDeps {
  book: JobBook;
  parts: JobParts;
  store: ObjectStore;
  logger: Logger;
  metrics: ReturnType<typeof createSinkMetrics>;
  uploadConcurrency: number;
  /** Commits the offsets whose effects have resolved (the partition consumer's commitSettled). */
  commit: () => Promise<void>;
  /** A job that may now be complete. */
  enqueue: (jobId: string) => void;
}

export class Spill {
  /** Resolves true once everything buffered up to now is in the bucket; undefined: nothing waits. */
  private pending: { promise: Promise<boolean>; resolve: (spilled: boolean) => void } | undefined;
  partsWritten = 0;

  constructor(private readonly deps: SpillDeps) {}

  /** The effect of messages ingested now: it resolves when the spill that holds them is in the bucket. */
  spilled(): Promise<boolean> {
    if (!this.pending) {
      let resolve: (spilled: boolean) => void = () => {};
      const promise = new Promise<boolean>((r) => (resolve = r));
      this.pending = { promise, resolve };
    }
    return this.pending.promise;
  }

  /** Messages wait for a spill before their offsets can be committed. */
  hasPendingOffsets(): boolean {
    return this.pending !== undefined;
  }

  /**
   * Writes every job's buffer as one sorted part, then commits the offsets of everything ingested so far.
   * The commit comes only after all parts are in the bucket: a committed offset must never cover a
   * message that exists only in this process's memory. The caller runs it inside its serial() section.
   */
  async flush(heartbeat?: () => Promise<void>): Promise<void> {
    const { book, parts, store, logger, metrics } = this.deps;
    const work: { job: JobState; lines: string[] }[] = [];
    for (const job of book.jobs.values()) {
      if (job.buffer.length === 0) continue;
      work.push({ job, lines: job.buffer });
      job.buffer = [];
      job.bufferBytes = 0;
    }
    book.bufferedMessages = 0;
    book.bufferedBytes = 0;
    const waiting = this.pending;
    this.pending = undefined;
    const failed: { job: JobState; lines: string[] }[] = [];
    let firstError: unknown;
    await forEachLimited(work, this.deps.uploadConcurrency, async ({ job, lines }) => {
      if (book.completed.has(job.jobId)) return; // completed meanwhile: late copies
      try {
        const sorted = sortAndDedupe(lines);
        const key = parts.newKey(job.jobId, lines.length);
        await retry(() => store.put(key, `${sorted.join('\n')}\n`, 'application/x-ndjson'), {
          ...parts.s3Retry('spill'),
          onRetry: (error, attempt, delayMs) => {
            logger.warn({ attempt, delayMs }, `sink: spill of ${job.jobId} failed, retrying: ${describeError(error)}`);
            void heartbeat?.().catch(() => {});
          },
        });
        job.partLines += lines.length;
        this.partsWritten++;
        metrics.partsWritten.inc();
      } catch (error) {
        failed.push({ job, lines });
        firstError ??= error;
      }
    });
    if (failed.length > 0) {
      // Put the lines back and keep the offsets uncommitted, so nothing is lost without a restart either.
      for (const { job, lines } of failed) {
        if (book.completed.has(job.jobId) || book.jobs.get(job.jobId) !== job) continue;
        job.buffer = lines.concat(job.buffer);
        const bytes = lines.reduce((sum, l) => sum + l.length, 0);
        job.bufferBytes += bytes;
        book.bufferedMessages += lines.length;
        book.bufferedBytes += bytes;
      }
      // Their effect resolves with the next spill that succeeds (flushes never overlap: serial()).
      if (waiting) this.pending = waiting;
      throw firstError;
    }
    if (waiting) {
      waiting.resolve(true);
      // A failed commit is logged by the consumer: the messages are safe in the bucket, and are only
      // read again (then de-duplicated) after a restart.
      await this.deps.commit();
    }
    for (const { job } of work) if (job.produced && !book.completed.has(job.jobId)) this.deps.enqueue(job.jobId);
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
