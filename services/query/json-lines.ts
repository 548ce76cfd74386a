/**
 * Line-by-line reads of JSONL objects in the bucket (output.jsonl, errors.jsonl) with byte offsets, so a
 * reader holds one line at a time and a page can start at any line with a ranged GET. A cursor is the
 * byte offset of a line start.
 */
import type { ObjectStore } from '../common/object-store.ts';
import { badRequest } from './query-error.ts';
import { T2iError } from '../common/errors.ts';

export interface Line {
  /** Byte offset of the first byte of the line. */
  start: number;
  /** Byte offset just past the line's newline (the next line's start). */
  end: number;
  /** The line without its line ending. */
  text: string;
}

/** A line longer than this is a broken file, not a row (rows are at most 1 MiB of input plus image URIs). */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;

/** Splits a byte stream into lines, counting offsets from `startOffset`; blank lines are skipped. */
export async function* splitLines(
  source: AsyncIterable<Uint8Array | string>,
  startOffset = 0,
  maxLineBytes = MAX_LINE_BYTES,
): AsyncGenerator<Line> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let lineStart = startOffset;
  for await (const piece of source) {
    const chunk = typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    let from = 0;
    for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
      const part = chunk.subarray(from, nl);
      const bytes = pendingBytes === 0 ? part : Buffer.concat([...pending, part]);
      const end = lineStart + bytes.length + 1;
      pending = [];
      pendingBytes = 0;
      const text = decodeLine(bytes);
      if (text.trim() !== '') yield { start: lineStart, end, text };
      lineStart = end;
      from = nl + 1;
    }
    if (from < chunk.length) {
      pending.push(chunk.subarray(from));
      pendingBytes += chunk.length - from;
      if (pendingBytes > maxLineBytes) throw new T2iError('INPUT_INVALID', `line at byte ${lineStart} is over ${maxLineBytes} bytes`);
    }
  }
  if (pendingBytes > 0) {
    const bytes = Buffer.concat(pending);
    const text = decodeLine(bytes);
    if (text.trim() !== '') yield { start: lineStart, end: lineStart + bytes.length, text };
  }
}

function decodeLine(bytes: Buffer): string {
  const end = bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length;
  return bytes.toString('utf8', 0, end);
}

/** A cursor (decimal byte offset) from a request, or a 400 answer. */
export function parseCursor(cursor: string | undefined): number {
  if (cursor === undefined || cursor === '') return 0;
  if (!/^\d{1,15}$/.test(cursor))
    throw badRequest(`invalid cursor ${JSON.stringify(cursor.slice(0, 40))}: expected the nextCursor of a previous page`);
  return Number(cursor);
}

/**
 * The lines of an object from `offset` on, or undefined when the object does not exist. With `align:
 * 'exact'` (cursors) the offset must be a line start: the byte before it is read too and must be a
 * newline, so a made-up cursor is refused (400) instead of yielding half a line. With `align: 'next'`
 * (probes of a binary search) reading starts at the first line that begins at or after the offset.
 * Breaking out of the loop aborts the GET.
 */
export async function readLines(
  store: ObjectStore,
  key: string,
  offset = 0,
  options: { align?: 'exact' | 'next'; size?: number } = {},
): Promise<AsyncGenerator<Line> | undefined> {
  const size = options.size ?? (await store.head(key))?.size;
  if (size === undefined) return undefined;
  if (offset >= size) return (async function* () {})();
  const stream = await store.getStream(key, offset > 0 ? { start: offset - 1 } : undefined);
  if (!stream) return undefined;
  if (offset === 0) return splitLines(stream, 0);
  const exact = (options.align ?? 'exact') === 'exact';
  let skipped = 0;
  let aligned = false;
  // Drops the bytes before the first line start at or after `offset` (the newline at offset - 1 included).
  const body = (async function* () {
    for await (const chunk of stream) {
      let bytes = chunk as Buffer;
      if (!aligned) {
        if (bytes.length === 0) continue;
        if (exact && bytes[0] !== 10) {
          stream.destroy();
          throw badRequest(`invalid cursor ${offset}: not the start of a line`);
        }
        const nl = bytes.indexOf(10);
        if (nl === -1) {
          skipped += bytes.length;
          continue;
        }
        aligned = true;
        skipped += nl + 1;
        bytes = bytes.subarray(nl + 1);
      }
      yield bytes;
    }
  })();
  return (async function* () {
    try {
      // The first chunk sets `skipped`, so the offsets of splitLines are known only after it arrived.
      const first = await body.next();
      if (first.done) return;
      yield* splitLines(
        (async function* () {
          yield first.value;
          yield* body;
        })(),
        offset - 1 + skipped,
      );
    } finally {
      // A reader that stops early must end the GET even when `body` was never delegated to (else the socket leaks).
      await body.return(undefined);
      stream.destroy();
    }
  })();
}

export interface LinePageOptions<T> {
  offset: number;
  /** Items per page. */
  limit: number;
  /** Stop after scanning this many bytes even when fewer than `limit` items matched (a filtered search over a huge file answers in bounded time; the client goes on from nextCursor). */
  maxScanBytes?: number;
  /** Turns a line into an item, or undefined to skip it (filtered out). */
  map: (line: Line) => T | undefined;
}

export interface LinePage<T> {
  items: T[];
  /** Offset to continue from; undefined at the end of the object. */
  nextCursor?: string;
  /** Bytes of the object looked at for this page. */
  scannedBytes: number;
}

/** One page of mapped lines; undefined when the object does not exist. */
export async function readLinePage<T>(store: ObjectStore, key: string, options: LinePageOptions<T>): Promise<LinePage<T> | undefined> {
  const lines = await readLines(store, key, options.offset);
  if (!lines) return undefined;
  const items: T[] = [];
  let position = options.offset;
  let more = false;
  for await (const line of lines) {
    if (items.length >= options.limit || (options.maxScanBytes !== undefined && position - options.offset >= options.maxScanBytes)) {
      more = true;
      break;
    }
    const item = options.map(line);
    if (item !== undefined) items.push(item);
    position = line.end;
  }
  return { items, scannedBytes: position - options.offset, ...(more ? { nextCursor: String(position) } : {}) };
}
