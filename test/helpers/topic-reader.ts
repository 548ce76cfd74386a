/**
 * The one way tests read a topic. `readTopic` reads every partition up to the high watermark taken when
 * it is called (so "nothing was dead-lettered" is a fact: high watermark 0, or every message read), and
 * `watchTopic` follows a topic live for conditions that become true later. Both own their consumer and
 * disconnect it (watchers on the calling test file's `after`).
 */
import { after } from 'node:test';
import type { Kafka, KafkaMessage } from 'kafkajs';
import type { AvroCodec, MessageName, MessageTypes } from '../../services/common/avro.ts';
import { headersToStrings } from '../../services/common/kafka.ts';
import { retry } from '../../services/common/retry.ts';
import { randomName } from './env.ts';

export interface TopicRecord<T> {
  key: string;
  value: T;
  headers: Record<string, string>;
  partition: number;
  offset: string;
}

/** Messages per partition between the low and high watermark right now (fresh topics may answer late: retried). */
export async function topicSize(kafka: Kafka, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await retry(() => admin.fetchTopicOffsets(topic), { attempts: 6, initialMs: 250, retryOn: () => true });
    return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Waits until consumer group `groupId` has committed every message of `topic` (its committed offsets reach
 * the high watermarks): after that, whatever the group's consumer did for those messages is done (a worker
 * commits a prompt only after its result or dead letter is acknowledged).
 */
export async function waitForCommitted(kafka: Kafka, groupId: string, topic: string, timeoutMs = 60_000): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const high = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
      const behind = high.filter((p) => BigInt(p.high) > (at.get(p.partition) ?? -1n) && BigInt(p.high) > BigInt(p.low));
      if (behind.length === 0) return;
      if (Date.now() > deadline)
        throw new Error(
          `group ${groupId} has not committed ${topic} to its end within ${timeoutMs} ms (partitions behind: ${behind.map((p) => p.partition).join(', ')})`,
        );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await admin.disconnect();
  }
}

/** Every raw message of `topic` up to the current high watermarks. */
export async function readTopicMessages(
  kafka: Kafka,
  topic: string,
  timeoutMs = 60_000,
): Promise<(KafkaMessage & { partition: number })[]> {
  const expected = await topicSize(kafka, topic);
  if (expected === 0) return [];
  const consumer = kafka.consumer({ groupId: randomName('read-'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  const messages: (KafkaMessage & { partition: number })[] = [];
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`read ${messages.length} of ${expected} messages of ${topic} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      void consumer.run({
        eachMessage: async ({ message, partition }) => {
          messages.push({ ...message, partition });
          if (messages.length >= expected) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
  } finally {
    await consumer.disconnect();
  }
  return messages;
}

function decodeRecord<N extends MessageName>(
  codec: AvroCodec,
  name: N,
  message: KafkaMessage & { partition: number },
): TopicRecord<MessageTypes[N]> {
  const headers = headersToStrings(message.headers);
  return {
    key: message.key?.toString() ?? '',
    value: codec.decode(name, message.value, headers),
    headers,
    partition: message.partition,
    offset: message.offset,
  };
}

/** Every message of `topic` up to the current high watermarks, decoded as `name`. */
export async function readTopic<N extends MessageName>(
  kafka: Kafka,
  codec: AvroCodec,
  topic: string,
  name: N,
): Promise<TopicRecord<MessageTypes[N]>[]> {
  return (await readTopicMessages(kafka, topic)).map((m) => decodeRecord(codec, name, m));
}

export interface TopicWatch<T> {
  /** Everything seen so far, in arrival order. */
  readonly records: TopicRecord<T>[];
  /** Resolves when `done(records)` holds; rejects after `timeoutMs` with `what` and the count seen. */
  until(what: string, done: (records: TopicRecord<T>[]) => boolean, timeoutMs?: number): Promise<TopicRecord<T>[]>;
  /** Stops following (done by itself when the calling test file ends, unless `closeAfterTests` is false). */
  close(): Promise<void>;
}

/**
 * Follows `topic` from the beginning with its own consumer group until the test file ends (or `close()`:
 * benchmarks, which run outside node:test, pass `closeAfterTests: false`).
 */
export async function watchTopic<N extends MessageName>(
  kafka: Kafka,
  codec: AvroCodec,
  topic: string,
  name: N,
  options: { closeAfterTests?: boolean } = {},
): Promise<TopicWatch<MessageTypes[N]>> {
  const records: TopicRecord<MessageTypes[N]>[] = [];
  const listeners = new Set<() => void>();
  let closing = false;
  // No restart after close: a crash then (its topic deleted by the test's cleanup) would restart it forever.
  const consumer = kafka.consumer({
    groupId: randomName('watch-'),
    maxWaitTimeInMs: 100,
    retry: { retries: 5, restartOnFailure: async () => !closing },
  });
  await consumer.connect();
  const close = () => {
    closing = true;
    return consumer.disconnect();
  };
  if (options.closeAfterTests !== false) after(close);
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message, partition }) => {
      records.push(decodeRecord(codec, name, { ...message, partition }));
      for (const listener of [...listeners]) listener();
    },
  });
  const until = (what: string, done: (all: TopicRecord<MessageTypes[N]>[]) => boolean, timeoutMs = 90_000) =>
    new Promise<TopicRecord<MessageTypes[N]>[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        listeners.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} on ${topic} (${records.length} messages so far)`));
      }, timeoutMs);
      const check = () => {
        if (!done(records)) return;
        clearTimeout(timer);
        listeners.delete(check);
        resolve(records);
      };
      listeners.add(check);
      check();
    });
  return { records, until, close };
}
