import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import type { ObjectStore } from '../common/object-store.ts';

/**
 * Writes lines to a bucket object as they come (multipart upload through ObjectStore.putStream), so a
 * 1,000,000-row output.jsonl never sits in memory: lines are grouped into ~64 KiB chunks and writing
 * waits while the upload is behind (the PassThrough's backpressure).
 */
export class ObjectLineWriter {
  private readonly stream = new PassThrough({ highWaterMark: 256 * 1024 });
  private readonly upload: Promise<void>;
  private pending: string[] = [];
  private pendingBytes = 0;
  lines = 0;

  constructor(
    store: ObjectStore,
    readonly key: string,
    contentType = 'application/x-ndjson',
  ) {
    // A failed upload destroys the stream, which rejects a writer waiting for 'drain'; the no-op listener
    // keeps that error from also surfacing as an unhandled 'error' event.
    this.stream.on('error', () => {});
    this.upload = store.putStream(key, this.stream, contentType);
    this.upload.catch((error: unknown) => this.stream.destroy(error as Error));
  }

  async writeLine(line: string): Promise<void> {
    this.pending.push(line);
    this.pendingBytes += line.length + 1;
    this.lines++;
    if (this.pendingBytes >= 64 * 1024) await this.writeChunk();
  }

  /** Ends the object and resolves once the upload is complete. */
  async end(): Promise<void> {
    if (this.pending.length > 0) await this.writeChunk();
    this.stream.end();
    await this.upload;
  }

  /** Gives up: the multipart upload is aborted (lib-storage cleans up its parts). */
  abort(error: Error): void {
    this.upload.catch(() => {});
    this.stream.destroy(error);
  }

  private async writeChunk(): Promise<void> {
    const chunk = `${this.pending.join('\n')}\n`;
    this.pending = [];
    this.pendingBytes = 0;
    if (!this.stream.write(chunk)) await Promise.race([once(this.stream, 'drain'), this.upload.then(() => undefined)]);
  }
}
