import { createRequire } from 'node:module';
import { crc32c } from '../common/kafka-fast-crc.ts';

/**
 * A faster encoder for kafkajs's Produce requests (API versions 3-7, record batches of magic 2), installed
 * as a runtime patch of kafkajs 2.2.x: node_modules is not edited, the module kafkajs loads for each request
 * version (`kafkajs/src/protocol/requests/produce/v<N>/request.js`) gets our function as its export in the
 * require cache. kafkajs's produce/index.js requires that module each time it builds a request, so the patch
 * applies from the next request on, to every kafkajs producer of the process.
 *
 * Why: kafkajs encodes each record with its own `Encoder` (a zero-filled 512-byte buffer, another one per
 * header), spreads every message into a new object, computes varlongs with BigInt-backed Longs, and copies
 * the bytes five times on the way up (record → batch body → batch → partition → topic → request). That was
 * ~45% of `t2i produce`'s CPU time (bench/producer/README.md). This writes one request into one buffer: sizes
 * first, then the bytes, the CRC-32C over each batch in place, each distinct headers object encoded once.
 *
 * The bytes are identical to kafkajs's own (test/producer/produce-request-encoder.test.ts compares them over
 * keys, values and headers of every kind kafkajs accepts). Requests the fast path does not cover — compression,
 * messages with their own timestamp, a key/value/header of another type — go to kafkajs's original encoder.
 */

const require = createRequire(import.meta.url);
const FIRST_VERSION = 3;
const LAST_VERSION = 7;

type Bytes = Buffer | string | null | undefined;
type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;

interface ProduceMessage {
  key?: Bytes;
  value: Bytes;
  headers?: Record<string, HeaderValue>;
  timestamp?: string | number | null;
}

interface PartitionData {
  partition: number | string;
  firstSequence?: number;
  messages: ProduceMessage[];
}

/** What kafkajs's produce/index.js passes to a request module (see kafkajs/src/protocol/requests/produce/v3/request.js). */
export interface ProduceRequestArgs {
  acks: number;
  timeout: number;
  transactionalId?: string | null;
  producerId?: unknown;
  producerEpoch?: number;
  compression?: number;
  topicData: { topic: string; partitions: PartitionData[] }[];
}

interface KafkaJsRequest {
  apiKey: number;
  apiVersion: number;
  apiName: string;
  expectResponse: () => boolean;
  encode: () => Promise<unknown>;
}

type RequestModule = (args: ProduceRequestArgs) => KafkaJsRequest;

interface EncoderLike {
  buf: Buffer;
  offset: number;
}

let installed = false;
let encoderPrototype: object | undefined;
let Long: { fromValue(value: unknown): { value: bigint } } | undefined;

/**
 * Replaces kafkajs's Produce v3-v7 request encoders with `encodeProduceRequest` (idempotent). Returns false,
 * patching nothing, when the installed kafkajs does not look like the one this was written against.
 */
export function installFastProduceEncoding(): boolean {
  if (installed) return true;
  const kafkajsVersion = (require('kafkajs/package.json') as { version: string }).version;
  if (!/^2\.2\./.test(kafkajsVersion)) return false;
  encoderPrototype = (require('kafkajs/src/protocol/encoder.js') as { prototype: object }).prototype;
  Long = require('kafkajs/src/utils/long.js') as typeof Long;
  const v3Path = require.resolve('kafkajs/src/protocol/requests/produce/v3/request.js');
  const original = require(v3Path) as RequestModule;
  const apiKey = original({ acks: -1, timeout: 0, topicData: [] }).apiKey;
  for (let version = FIRST_VERSION; version <= LAST_VERSION; version++) {
    const path = require.resolve(`kafkajs/src/protocol/requests/produce/v${version}/request.js`);
    require(path);
    const cached = require.cache[path];
    if (!cached) return false;
    const fallback = version === FIRST_VERSION ? original : (args: ProduceRequestArgs) => ({ ...original(args), apiVersion: version });
    cached.exports = (args: ProduceRequestArgs): KafkaJsRequest => ({
      apiKey,
      apiVersion: version,
      apiName: 'Produce',
      expectResponse: () => args.acks !== 0,
      encode: async () => encodeProduceRequest(args) ?? fallback(args).encode(),
    });
  }
  installed = true;
  return true;
}

/** Int32 scratch for record body sizes, reused across requests. */
let bodySizes = new Int32Array(1 << 14);

/**
 * The request body of a Produce request (v3-v7 share it) as a kafkajs Encoder, or undefined when the fast path
 * does not cover the request (then kafkajs's own encoder must be used).
 */
export function encodeProduceRequest(args: ProduceRequestArgs): EncoderLike | undefined {
  if (!encoderPrototype || !Long) throw new Error('installFastProduceEncoding() first');
  if ((args.compression ?? 0) !== 0) return undefined;
  const transactionalId = args.transactionalId ?? null;
  const producerId = args.producerId === undefined ? -1n : Long.fromValue(args.producerId).value;
  const producerEpoch = args.producerEpoch ?? 0;

  // Pass 1: sizes. Body sizes of the records go to bodySizes, in request order.
  let records = 0;
  for (const { partitions } of args.topicData) for (const p of partitions) records += p.messages.length;
  if (bodySizes.length < records) bodySizes = new Int32Array(Math.max(records, bodySizes.length * 2));
  const headerCache = new HeaderCache();
  let size = 2 + (transactionalId === null ? 0 : Buffer.byteLength(transactionalId)) + 2 + 4 + 4;
  let r = 0;
  for (const { topic, partitions } of args.topicData) {
    size += 2 + Buffer.byteLength(topic) + 4;
    for (const { messages } of partitions) {
      size += 4 + 4 + BATCH_HEADER_BYTES;
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i]!;
        if (m.timestamp != null) return undefined;
        const key = bytesSize(m.key);
        const value = bytesSize(m.value);
        const headers = headerCache.size(m.headers);
        if (key < -1 || value < -1 || headers < 0) return undefined;
        // attributes (1) + timestampDelta 0 (1) + offsetDelta + key + value + headers
        const body = 2 + varIntSize(i) + varBytesSize(key) + varBytesSize(value) + headers;
        bodySizes[r++] = body;
        size += varIntSize(body) + body;
      }
    }
  }

  // Pass 2: bytes.
  const buf = Buffer.allocUnsafe(size);
  let o = 0;
  if (transactionalId === null) o = buf.writeInt16BE(-1, o);
  else {
    o = buf.writeInt16BE(Buffer.byteLength(transactionalId), o);
    o += buf.write(transactionalId, o, 'utf8');
  }
  o = buf.writeInt16BE(args.acks, o);
  o = buf.writeInt32BE(args.timeout, o);
  o = buf.writeInt32BE(args.topicData.length, o);
  const now = BigInt(Date.now());
  const attributes = transactionalId === null ? 0 : 16;
  r = 0;
  for (const { topic, partitions } of args.topicData) {
    o = buf.writeInt16BE(Buffer.byteLength(topic), o);
    o += buf.write(topic, o, 'utf8');
    o = buf.writeInt32BE(partitions.length, o);
    for (const { partition, messages, firstSequence } of partitions) {
      o = buf.writeInt32BE(Number(partition), o);
      const sizeAt = o;
      o += 4; // record set size, once known
      const batchStart = o;
      o = buf.writeBigInt64BE(0n, o); // base offset
      o += 4; // batch length
      o = buf.writeInt32BE(0, o); // partition leader epoch
      o = buf.writeInt8(2, o); // magic
      const crcAt = o;
      o += 4;
      o = buf.writeInt16BE(attributes, o);
      o = buf.writeInt32BE(messages.length - 1, o); // last offset delta
      o = buf.writeBigInt64BE(now, o); // first timestamp
      o = buf.writeBigInt64BE(now, o); // max timestamp
      o = buf.writeBigInt64BE(producerId, o);
      o = buf.writeInt16BE(producerEpoch, o);
      o = buf.writeInt32BE(firstSequence ?? 0, o);
      o = buf.writeInt32BE(messages.length, o);
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i]!;
        o = writeVarInt(buf, o, bodySizes[r++]!);
        buf[o++] = 0; // attributes
        buf[o++] = 0; // timestamp delta 0 (no message has its own timestamp)
        o = writeVarInt(buf, o, i);
        o = writeBytes(buf, o, m.key);
        o = writeBytes(buf, o, m.value);
        o = headerCache.write(buf, o, m.headers);
      }
      buf.writeInt32BE(o - batchStart, sizeAt);
      buf.writeInt32BE(o - batchStart - 12, batchStart + 8);
      buf.writeUInt32BE(crc32c(buf, crcAt + 4, o), crcAt);
    }
  }
  if (o !== size) throw new Error(`produce request encoder: wrote ${o} of ${size} bytes`);
  const encoder = Object.create(encoderPrototype) as EncoderLike;
  encoder.buf = buf;
  encoder.offset = size;
  return encoder;
}

/** Base offset 8, length 4, leader epoch 4, magic 1, crc 4, attributes 2, last offset delta 4, timestamps 16, producer id 8, epoch 2, sequence 4, count 4. */
const BATCH_HEADER_BYTES = 61;

/** Byte length of a key or value; -1 for null; < -1 for a type the fast path does not take. */
function bytesSize(value: Bytes): number {
  if (value == null) return -1;
  if (typeof value === 'string') return Buffer.byteLength(value);
  if (Buffer.isBuffer(value)) return value.length;
  return -2;
}

function varBytesSize(length: number): number {
  return length < 0 ? 1 : varIntSize(length) + length;
}

/** Size of a zigzag varint (Kafka's signed varint) of a 32-bit integer. */
function varIntSize(value: number): number {
  let z = ((value << 1) ^ (value >> 31)) >>> 0;
  let bytes = 1;
  while (z >= 0x80) {
    z >>>= 7;
    bytes++;
  }
  return bytes;
}

function writeVarInt(buf: Buffer, o: number, value: number): number {
  let z = ((value << 1) ^ (value >> 31)) >>> 0;
  while (z >= 0x80) {
    buf[o++] = (z & 0x7f) | 0x80;
    z >>>= 7;
  }
  buf[o++] = z;
  return o;
}

function writeBytes(buf: Buffer, o: number, value: Bytes): number {
  if (value == null) return writeVarInt(buf, o, -1);
  if (typeof value === 'string') {
    o = writeVarInt(buf, o, Buffer.byteLength(value));
    return o + buf.write(value, o, 'utf8');
  }
  o = writeVarInt(buf, o, value.length);
  return o + value.copy(buf, o);
}

/**
 * The encoded header section of the headers objects of a request (count, then key/value pairs, in kafkajs's
 * order: Object.keys, array values expanded). Messages usually share one object (the schema header, no
 * per-message trace), so the last one is kept and consecutive messages reuse its bytes.
 */
class HeaderCache {
  private static readonly EMPTY = Buffer.from([0]);
  private lastHeaders: object | undefined;
  private lastBytes: Buffer | null = HeaderCache.EMPTY;

  /** Size of the header section; -1 when a value has a type the fast path does not take. */
  size(headers: Record<string, HeaderValue> | undefined): number {
    const bytes = this.get(headers);
    return bytes === null ? -1 : bytes.length;
  }

  write(buf: Buffer, o: number, headers: Record<string, HeaderValue> | undefined): number {
    return o + (this.get(headers) as Buffer).copy(buf, o);
  }

  private get(headers: Record<string, HeaderValue> | undefined): Buffer | null {
    if (headers === undefined || headers === null) return HeaderCache.EMPTY;
    if (headers !== this.lastHeaders) {
      this.lastHeaders = headers;
      this.lastBytes = encodeHeaders(headers);
    }
    return this.lastBytes;
  }
}

function encodeHeaders(headers: Record<string, HeaderValue>): Buffer | null {
  const pairs: [string, Buffer | string][] = [];
  for (const key of Object.keys(headers)) {
    const value = headers[key];
    const values = Array.isArray(value) ? value : [value];
    for (const v of values) {
      if (typeof v !== 'string' && !Buffer.isBuffer(v)) return null;
      pairs.push([key, v]);
    }
  }
  let size = varIntSize(pairs.length);
  for (const [key, value] of pairs) size += varBytesSize(Buffer.byteLength(key)) + varBytesSize(bytesSize(value));
  const buf = Buffer.alloc(size);
  let o = writeVarInt(buf, 0, pairs.length);
  for (const [key, value] of pairs) {
    o = writeBytes(buf, o, key);
    o = writeBytes(buf, o, value);
  }
  return buf;
}
