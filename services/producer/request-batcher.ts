import { CompressionTypes, Partitioners, type ICustomPartitioner, type Message, type Producer } from 'kafkajs';
import type { ProduceCompression } from './options.ts';

export interface RequestBatcherOptions {
  /** Partitions of each topic this batcher writes (from the broker's metadata). */
  partitions: Readonly<Record<string, number>>;
  maxBatchMessages: number;
  maxBatchBytes: number;
  maxPartitionBytes: number;
  maxInFlight: number;
  compression: ProduceCompression;
  /** Called with the number of messages of each request once the broker acknowledged it. */
  onAcknowledged?: (messages: number) => void;
}

/**
 * kafkajs's partitioner for messages that carry their partition (all of the batcher's): it returns that
 * partition at once. kafkajs's DefaultPartitioner, which takes over for a message without one, filters the
 * partition metadata into a new array on every call, before looking at the message.
 */
export const PresetPartitioner: ICustomPartitioner = () => {
  const fallback = Partitioners.DefaultPartitioner();
  return (args) => args.message.partition ?? fallback(args);
};

const keyScratch = Buffer.allocUnsafe(4096);

/**
 * Kafka's murmur2 of a key's UTF-8 bytes, as a signed 32-bit integer: the hash of the Java client's
 * default partitioner, and of kafkajs's DefaultPartitioner (kafkajs/src/producer/partitioners/default/murmur2.js
 * computes the same with BigInt-backed Longs, ~1 µs a key; this uses Math.imul).
 */
export function murmur2(key: string): number {
  const data = Buffer.byteLength(key) <= keyScratch.length ? keyScratch : Buffer.allocUnsafe(Buffer.byteLength(key));
  const length = data.write(key, 0, 'utf8');
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const length4 = length & ~3;
  for (let i = 0; i < length4; i += 4) {
    let k = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & 3;
  if (tail > 0) {
    if (tail === 3) h ^= data[length4 + 2]! << 16;
    if (tail >= 2) h ^= data[length4 + 1]! << 8;
    h ^= data[length4]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/**
 * Groups messages into produce requests and keeps a bounded number of requests in flight.
 *
 * Each message gets its partition here, with the same murmur2 hash as kafkajs and the Java client, so
 * the batcher can keep every partition's share of a request under the broker's size limit for one record
 * batch (message.max.bytes). A request is cut when it reaches maxBatchMessages or maxBatchBytes, or when
 * one partition would pass maxPartitionBytes. Backpressure is explicit: the caller awaits waitForRoom()
 * after each input chunk, which holds it while maxInFlight requests are unacknowledged, so at most
 * maxInFlight requests (plus those one chunk makes) are in memory. With the idempotent producer kafkajs
 * sends one request per broker at a time; the requests waiting behind it are already encoded, so
 * reading and encoding overlap the broker's round trip.
 */
export class RequestBatcher {
  private readonly partitionCounts = new Map<string, number>();
  private pending = new Map<string, Message[]>();
  private pendingMessages = 0;
  private pendingBytes = 0;
  private partitionBytes = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;
  private requestCount = 0;
  private readonly compression: CompressionTypes;

  constructor(
    private readonly producer: Pick<Producer, 'sendBatch'>,
    private readonly options: RequestBatcherOptions,
  ) {
    for (const [topic, count] of Object.entries(options.partitions)) this.partitionCounts.set(topic, count);
    this.compression = options.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  }

  /** The partition a key goes to. */
  partitionOf(topic: string, key: string): number {
    const count = this.partitionCounts.get(topic);
    if (count === undefined) throw new Error(`RequestBatcher: no partition count for topic ${topic}`);
    return (murmur2(key) & 0x7fffffff) % count;
  }

  /**
   * Adds messages that must travel together (the prompts of one row: same key, same partition), cutting
   * the current request first when they would not fit. The messages carry their partition.
   */
  add(topic: string, messages: Message[], sizes: number[]): void {
    this.throwIfFailed();
    let bytes = 0;
    for (const size of sizes) bytes += size;
    const partition = messages[0]?.partition ?? 0;
    const slot = `${topic}\u0000${partition}`;
    if (this.pendingMessages > 0) {
      const full =
        this.pendingMessages + messages.length > this.options.maxBatchMessages ||
        this.pendingBytes + bytes > this.options.maxBatchBytes ||
        (this.partitionBytes.get(slot) ?? 0) + bytes > this.options.maxPartitionBytes;
      if (full) this.flush();
    }
    let list = this.pending.get(topic);
    if (!list) {
      list = [];
      this.pending.set(topic, list);
    }
    for (const message of messages) list.push(message);
    this.pendingMessages += messages.length;
    this.pendingBytes += bytes;
    this.partitionBytes.set(slot, (this.partitionBytes.get(slot) ?? 0) + bytes);
  }

  /** Sends what is pending as one request (not awaited: see waitForRoom and drain). */
  flush(): void {
    if (this.pendingMessages === 0) return;
    const topicMessages = [...this.pending].map(([topic, messages]) => ({ topic, messages }));
    const count = this.pendingMessages;
    this.pending = new Map();
    this.pendingMessages = 0;
    this.pendingBytes = 0;
    this.partitionBytes = new Map();
    this.requestCount++;
    const request: Promise<void> = this.producer
      .sendBatch({ topicMessages, acks: -1, compression: this.compression })
      .then(
        () => this.options.onAcknowledged?.(count),
        (error: unknown) => {
          this.failure ??= { error };
        },
      )
      .finally(() => this.inFlight.delete(request));
    this.inFlight.add(request);
  }

  /** Resolves when fewer than maxInFlight requests are unacknowledged; rejects once a request failed for good. */
  async waitForRoom(): Promise<void> {
    while (this.inFlight.size >= this.options.maxInFlight) {
      await Promise.race(this.inFlight);
      this.throwIfFailed();
    }
    this.throwIfFailed();
  }

  /** Sends the rest and resolves when every request is acknowledged; rejects with the first failure. */
  async drain(): Promise<void> {
    this.flush();
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    this.throwIfFailed();
  }

  /** Waits for what is in flight without sending the rest (used on failure or abort). */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
  }

  get requests(): number {
    return this.requestCount;
  }

  get unacknowledgedRequests(): number {
    return this.inFlight.size;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure.error;
  }
}
