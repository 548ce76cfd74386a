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

/**
 * Splits a byte stream into lines, chunk by chunk, without ever holding more than `maxLineBytes` of one
 * line: the part of a line that crosses a chunk boundary is kept as a list of slices, and a line that
 * grows over the limit is cut to its head and the rest is skipped up to the next newline. Drops a UTF-8
 * BOM at the start of the input and the CR of CRLF endings. Synchronous (push-style), so the caller
 * handles a whole chunk's lines without a promise per line.
 */
export class LineSplitter {
  private lineNo = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes of the current line seen so far while it is being skipped (over the limit); -1 when not skipping. */
  private skippedLength = -1;
  private atStart = true;

  constructor(private readonly options: LineSplitterOptions) {}

  /** Feeds a chunk; calls `onLine` for each line it completes. */
  push(chunk: Buffer, onLine: (line: InputLine) => void): void {
    let start = 0;
    if (this.atStart) {
      // The BOM may be split across the first chunks in theory; inputs with 1-2 byte first chunks do not happen here.
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) start = 3;
      if (chunk.length > 0) this.atStart = false;
    }
    while (start < chunk.length) {
      const end = chunk.indexOf(LF, start);
      if (end === -1) {
        this.append(chunk.subarray(start));
        return;
      }
      if (this.pendingBytes === 0 && this.skippedLength < 0) {
        // Fast path: the whole line is inside this chunk.
        const length = end - start;
        if (length <= this.options.maxLineBytes + 1) {
          this.emitWhole(chunk.subarray(start, end), onLine);
          start = end + 1;
          continue;
        }
      }
      this.append(chunk.subarray(start, end));
      this.emitPending(onLine);
      start = end + 1;
    }
  }

  /** Ends the input: emits a last line that had no newline. */
  end(onLine: (line: InputLine) => void): void {
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
    // One byte over the limit is allowed here: it may be the CR of a CRLF ending.
    if (this.pendingBytes + slice.length > this.options.maxLineBytes + 1) {
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
    let length = bytes.length;
    if (length > 0 && bytes[length - 1] === CR) length--;
    if (length > this.options.maxLineBytes) {
      onLine({ lineNo: this.lineNo, bytes: Buffer.from(bytes.subarray(0, this.options.keepBytes)), truncated: true, length });
      return;
    }
    onLine({ lineNo: this.lineNo, bytes: length === bytes.length ? bytes : bytes.subarray(0, length), truncated: false, length });
  }

  private emitPending(onLine: (line: InputLine) => void): void {
    if (this.skippedLength >= 0) {
      this.lineNo++;
      const head = this.pending[0] ?? Buffer.alloc(0);
      // The skipped part cannot be inspected any more; a CRLF ending costs one byte of the reported length.
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
