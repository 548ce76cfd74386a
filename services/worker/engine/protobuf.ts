/**
 * A minimal protocol-buffers wire-format reader, enough to read ONNX model headers and SentencePiece
 * models without a protobuf library or a schema compiler. It reads from a random-access source, so a
 * multi-gigabyte .onnx file with embedded weights is walked by skipping the weight fields, never read
 * whole.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** Random access to bytes (a buffer, or a file read in blocks). */
export interface ByteSource {
  readonly size: number;
  byte(offset: number): number;
  bytes(offset: number, length: number): Uint8Array;
}

export class BufferSource implements ByteSource {
  constructor(private readonly buffer: Uint8Array) {}
  get size(): number {
    return this.buffer.length;
  }
  byte(offset: number): number {
    const b = this.buffer[offset];
    if (b === undefined) throw new RangeError(`read past the end (offset ${offset} of ${this.buffer.length})`);
    return b;
  }
  bytes(offset: number, length: number): Uint8Array {
    if (offset + length > this.buffer.length) throw new RangeError(`read past the end (${offset}+${length} of ${this.buffer.length})`);
    return this.buffer.subarray(offset, offset + length);
  }
}

const BLOCK = 64 * 1024;

/** A file read on demand in 64 KiB blocks (the last few are cached). Call close() when done. */
export class FileSource implements ByteSource {
  readonly size: number;
  private readonly fd: number;
  private readonly cache = new Map<number, Buffer>();

  constructor(path: string) {
    this.fd = openSync(path, 'r');
    this.size = fstatSync(this.fd).size;
  }

  private block(index: number): Buffer {
    let block = this.cache.get(index);
    if (!block) {
      block = Buffer.alloc(Math.min(BLOCK, this.size - index * BLOCK));
      readSync(this.fd, block, 0, block.length, index * BLOCK);
      if (this.cache.size >= 16) this.cache.delete(this.cache.keys().next().value as number);
      this.cache.set(index, block);
    }
    return block;
  }

  byte(offset: number): number {
    if (offset >= this.size) throw new RangeError(`read past the end (offset ${offset} of ${this.size})`);
    return this.block(Math.floor(offset / BLOCK))[offset % BLOCK]!;
  }

  bytes(offset: number, length: number): Uint8Array {
    if (offset + length > this.size) throw new RangeError(`read past the end (${offset}+${length} of ${this.size})`);
    const out = Buffer.alloc(length);
    readSync(this.fd, out, 0, length, offset);
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

export const WIRE = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;

export interface Field {
  number: number;
  wireType: number;
  /** VARINT value (as a double: exact below 2^53), or the raw I32/I64 payload's offset. */
  value: number;
  /** LEN payload: [start, end) in the source. */
  start: number;
  end: number;
}

export function readVarint(source: ByteSource, offset: number): [value: number, next: number] {
  let value = 0;
  let scale = 1;
  let pos = offset;
  for (let i = 0; i < 10; i++) {
    const b = source.byte(pos++);
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
  throw new RangeError(`malformed varint at offset ${offset}`);
}

/** The fields of one message occupying [start, end). */
export function* fields(source: ByteSource, start = 0, end = source.size): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const [key, afterKey] = readVarint(source, pos);
    const number = Math.floor(key / 8);
    const wireType = key % 8;
    pos = afterKey;
    switch (wireType) {
      case WIRE.VARINT: {
        const [value, next] = readVarint(source, pos);
        yield { number, wireType, value, start: pos, end: next };
        pos = next;
        break;
      }
      case WIRE.I64:
        yield { number, wireType, value: pos, start: pos, end: pos + 8 };
        pos += 8;
        break;
      case WIRE.I32:
        yield { number, wireType, value: pos, start: pos, end: pos + 4 };
        pos += 4;
        break;
      case WIRE.LEN: {
        const [length, next] = readVarint(source, pos);
        yield { number, wireType, value: length, start: next, end: next + length };
        pos = next + length;
        break;
      }
      default:
        throw new RangeError(`unsupported wire type ${wireType} at offset ${pos}`);
    }
    if (pos > end) throw new RangeError(`field ${number} runs past its message (${pos} > ${end})`);
  }
}

const decoder = new TextDecoder('utf-8', { fatal: false });

export function stringOf(source: ByteSource, field: Field): string {
  return decoder.decode(source.bytes(field.start, field.end - field.start));
}

export function float32Of(source: ByteSource, field: Field): number {
  const b = source.bytes(field.start, 4);
  return new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
}

/** Repeated varints, packed (LEN) or not (one VARINT field each). */
export function varintsOf(source: ByteSource, field: Field): number[] {
  if (field.wireType === WIRE.VARINT) return [field.value];
  const out: number[] = [];
  let pos = field.start;
  while (pos < field.end) {
    const [v, next] = readVarint(source, pos);
    out.push(v);
    pos = next;
  }
  return out;
}
