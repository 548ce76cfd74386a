/**
 * Spilling: every job's buffered lines become one sorted, de-duplicated part in the bucket, and only then
 * are the offsets of everything ingested so far committed (a committed offset never covers a message that
 * is only in memory). A failed spill puts the lines back and keeps the offsets, so nothing is lost.
 */
import type { Logger } from 'pino';
import { describeError } from '../common/errors.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { retry } from '../common/retry.ts';
import type { JobBook, JobState } from './job-book.ts';
import type { JobParts } from './job-parts.ts';
import { sortAndDedupe } from './merge.ts';
import type { createSinkMetrics } from './sink-metrics.ts';

export interface PendingOffset {
  topic: string;
  partition: number;
  offset: string;
}

export interface SpillDeps {
  book: JobBook;
  parts: JobParts;
  store: ObjectStore;
  logger: Logger;
  metrics: ReturnType<typeof createSinkMetrics>;
  uploadConcurrency: number;
  /** Commits consumed offsets (after the parts that hold their messages are in the bucket). */
  commit: (offsets: PendingOffset[]) => Promise<void>;
  /** A job that may now be complete. */
  enqueue: (jobId: string) => void;
}

export class Spill {
  private readonly pendingOffsets = new Map<string, PendingOffset>();
  partsWritten = 0;

  constructor(private readonly deps: SpillDeps) {}

  /** The next offset to commit for a partition, once what came before it is spilled. */
  noteOffset(offset: PendingOffset): void {
    this.pendingOffsets.set(`${offset.topic}:${offset.partition}`, offset);
  }

  hasPendingOffsets(): boolean {
    return this.pendingOffsets.size > 0;
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
    const offsets = [...this.pendingOffsets.values()];
    this.pendingOffsets.clear();
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
      for (const o of offsets) {
        const id = `${o.topic}:${o.partition}`;
        if (!this.pendingOffsets.has(id)) this.pendingOffsets.set(id, o);
      }
      throw firstError;
    }
    if (offsets.length > 0) {
      try {
        await this.deps.commit(offsets);
      } catch (error) {
        // The messages are safe in the bucket; an uncommitted offset only means duplicates after a restart.
        logger.warn({ err: error }, `sink: offset commit failed (messages will be re-read, then de-duplicated): ${describeError(error)}`);
      }
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
