/**
 * A job's spilled parts in the bucket (`jobs/<jobId>/_sink/parts/<ulid>-n<lines>.jsonl`): listing them,
 * merging them in key order, compacting many into few, and deleting the sink's state of a finished job.
 */
import type { Logger } from 'pino';
import { monotonicFactory } from 'ulid';
import { T2iError, describeError } from '../common/errors.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { retry } from '../common/retry.ts';
import { parsePartKey, partKey, partsPrefix, sinkPrefix } from '../common/bucket-layout.ts';
import { mergeSortedParts, readLines, type MergeCounters } from './merge.ts';
import { ObjectLineWriter } from './object-writer.ts';
import type { PartEntry } from './part-format.ts';

export interface PartRef {
  key: string;
  count: number;
}

export class JobParts {
  private readonly newId = monotonicFactory();

  constructor(
    private readonly store: ObjectStore,
    private readonly logger: Logger,
    private readonly mergeFanIn: number,
  ) {}

  /** A new part's key: ordered after every part this process wrote before, carrying its line count. */
  newKey(jobId: string, lines: number): string {
    return partKey(jobId, this.newId(), lines);
  }

  async list(jobId: string): Promise<PartRef[]> {
    return retry(async () => {
      const parts: PartRef[] = [];
      for await (const object of this.store.list(partsPrefix(jobId))) {
        const parsed = parsePartKey(object.key);
        if (parsed) parts.push({ key: object.key, count: parsed.count });
      }
      return parts.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    }, this.s3Retry('list parts'));
  }

  merge(parts: PartRef[], counters?: MergeCounters): AsyncGenerator<PartEntry> {
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
  async compact(jobId: string, parts: PartRef[]): Promise<PartRef[]> {
    const fanIn = this.mergeFanIn;
    let remaining = [...parts];
    while (remaining.length > fanIn) {
      remaining.sort((a, b) => a.count - b.count || (a.key < b.key ? -1 : 1));
      const take = Math.min(fanIn, remaining.length - fanIn + 1);
      const group = remaining.slice(0, take);
      const count = group.reduce((sum, p) => sum + p.count, 0);
      const key = this.newKey(jobId, count);
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

  /** Deletes `_sink/` of a job (parts): harmless leftovers when it fails, so it never throws. */
  async deleteSinkState(jobId: string): Promise<void> {
    try {
      const keys: string[] = [];
      for await (const object of this.store.list(sinkPrefix(jobId))) keys.push(object.key);
      // Deepest first: servers with a filesystem backend (s3proxy) list folders as keys and want them empty.
      await this.deleteKeys(keys.sort().reverse());
    } catch (error) {
      this.logger.warn({ err: error, jobId }, `sink: could not delete ${sinkPrefix(jobId)} (harmless leftovers): ${describeError(error)}`);
    }
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

  /** The sink's retry policy for one S3 operation: a few attempts, each logged. */
  s3Retry(what: string) {
    return {
      attempts: 6,
      maxMs: 5000,
      onRetry: (error: unknown, attempt: number, delayMs: number) =>
        this.logger.warn({ attempt, delayMs }, `sink: S3 ${what} failed, retrying in ${delayMs} ms: ${describeError(error)}`),
    };
  }
}
