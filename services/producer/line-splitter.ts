/** One line of the input, without its line ending. */
export interface InputLine {
  /** 1-based line number in the input (blank lines count, so it matches what an editor shows). */
  lineNo: number;
  /** The line's bytes (no BOM, no trailing CR/LF). For an over-long line: only its head (see `truncated`). */
  bytes: Buffer;
  /** The line was longer than the limit: `bytes` holds its first `keepBytes` bytes, the rest was skipped. */
  truncated: boolean;
  /** The line's full length in bytes (without the line ending). */
  length: number;
}

export interface LineSplitterOptions {
  /** Lines longer than this (bytes, without the line ending) are not buffered: they come out truncated. */
  maxLineBytes: number;
  /** How much of an over-long line is kept (for the error record's `raw`). */
  keepBytes: number;
}

const LF = 0x0a;
const CR = 0x0d;

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/**
 * Splits a byte stream into lines, chunk by chunk, without ever holding more than `maxLineBytes` of one
 * line: the part of a line that crosses a chunk boundary is kept as a list of slices, and a line that
 * grows over the limit is cut to its head and the rest is skipped up to the next newline. Line endings
 * are LF, CRLF or a lone CR (classic Mac files), even when a CRLF is split across chunks; a UTF-8 BOM at
 * the start is dropped, even when it is split across the first chunks. Synchronous (push-style), so the
 * caller handles a whole chunk's lines without a promise per line.
 */
export class LineSplitter {
  private lineNo = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of the current line seen so far while it is being skipped (over the limit); -1 when not skipping. */
  private skippedLength = -1;
  /** The first bytes of the input, held until they show whether a BOM starts it. */
  private head: Buffer | undefined = Buffer.alloc(0);
  /** The previous chunk ended with CR: an LF starting this chunk belongs to that CRLF. */
  private afterCr = false;

  constructor(private readonly options: LineSplitterOptions) {}

  /** Feeds a chunk; calls `onLine` for each line it completes. */
  push(input: Buffer, onLine: (line: InputLine) => void): void {
    let chunk = input;
    if (this.head !== undefined) {
      const seen = Buffer.concat([this.head, chunk]);
      if (seen.length < BOM.length && BOM.subarray(0, seen.length).equals(seen)) {
        this.head = seen;
        return;
      }
      this.head = undefined;
      chunk = seen.subarray(0, BOM.length).equals(BOM) ? seen.subarray(BOM.length) : seen;
    }
    let start = 0;
    if (this.afterCr && chunk.length > 0) {
      if (chunk[0] === LF) start = 1;
      this.afterCr = false;
    }
    // Next CR and LF positions, each searched again only once passed (no rescans of the chunk per line).
    let nextLf = chunk.indexOf(LF, start);
    let nextCr = chunk.indexOf(CR, start);
    while (start < chunk.length) {
      if (nextLf !== -1 && nextLf < start) nextLf = chunk.indexOf(LF, start);
      if (nextCr !== -1 && nextCr < start) nextCr = chunk.indexOf(CR, start);
      const end = nextLf === -1 ? nextCr : nextCr === -1 ? nextLf : Math.min(nextLf, nextCr);
      if (end === -1) {
        this.append(chunk.subarray(start));
        return;
      }
      // After the line: skip its ending (LF, CR, or CR LF, the LF possibly in the next chunk).
      let next = end + 1;
      if (chunk[end] === CR) {
        if (end + 1 < chunk.length) {
          if (chunk[end + 1] === LF) next = end + 2;
        } else this.afterCr = true;
      }
      if (this.pendingBytes === 0 && this.skippedLength < 0 && end - start <= this.options.maxLineBytes) {
        // Fast path: the whole line is inside this chunk.
        this.emitWhole(chunk.subarray(start, end), onLine);
      } else {
        this.append(chunk.subarray(start, end));
        this.emitPending(onLine);
      }
      start = next;
    }
  }

  /** Ends the input: emits a last line that had no newline. */
  end(onLine: (line: InputLine) => void): void {
    if (this.head !== undefined && this.head.length > 0) {
      // An input of one or two bytes that look like the start of a BOM: they are the content.
      const head = this.head;
      this.head = undefined;
      this.append(head);
    }
    if (this.pendingBytes > 0 || this.skippedLength >= 0) this.emitPending(onLine);
  }

  /** Lines seen so far (the number of the last one emitted). */
  get lines(): number {
    return this.lineNo;
  }

  private append(slice: Buffer): void {
    if (slice.length === 0) return;
    if (this.skippedLength >= 0) {
      this.skippedLength += slice.length;
      return;
    }
    if (this.pendingBytes + slice.length > this.options.maxLineBytes) {
      const head = Buffer.concat([...this.pending, slice], this.pendingBytes + slice.length).subarray(0, this.options.keepBytes);
      this.skippedLength = this.pendingBytes + slice.length;
      // Copy the head so the big chunks behind it can be freed.
      this.pending = [Buffer.from(head)];
      this.pendingBytes = this.pending[0]!.length;
      return;
    }
    // Copy: the stream may reuse chunk memory, and a small copy lets the big chunk go.
    this.pending.push(Buffer.from(slice));
    this.pendingBytes += slice.length;
  }

  private emitWhole(bytes: Buffer, onLine: (line: InputLine) => void): void {
    this.lineNo++;
    const length = bytes.length;
    if (length > this.options.maxLineBytes) {
      onLine({ lineNo: this.lineNo, bytes: Buffer.from(bytes.subarray(0, this.options.keepBytes)), truncated: true, length });
      return;
    }
    onLine({ lineNo: this.lineNo, bytes, truncated: false, length });
  }

  private emitPending(onLine: (line: InputLine) => void): void {
    if (this.skippedLength >= 0) {
      this.lineNo++;
      const head = this.pending[0] ?? Buffer.alloc(0);
      onLine({ lineNo: this.lineNo, bytes: head, truncated: true, length: this.skippedLength });
    } else {
      const bytes = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
      this.emitWhole(bytes, onLine);
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.skippedLength = -1;
  }
}
