/** Kafka answers the producer needs to tell apart: partition counts, a broker refusal, a KafkaJS error, a bounded wait. */
import type { Admin } from 'kafkajs';
import { T2iError } from '../common/errors.ts';

export async function partitionCounts(admin: Admin, topics: string[]): Promise<Record<string, number>> {
  const metadata = await admin.fetchTopicMetadata({ topics });
  const out: Record<string, number> = {};
  for (const topic of metadata.topics) out[topic.name] = topic.partitions.length;
  for (const topic of topics)
    if (!out[topic]) throw new T2iError('KAFKA_UNAVAILABLE', `topic ${topic} has no partitions`, { retriable: true });
  return out;
}

/** A protocol error the broker answered with and that retrying cannot fix (message too large, bad topic…): not an outage. */
export function isBrokerRefusal(error: unknown): boolean {
  const e = error as { name?: string; retriable?: boolean; type?: string };
  return e.name === 'KafkaJSProtocolError' && e.retriable === false;
}

export function isKafkaError(error: unknown): boolean {
  return error instanceof Error && /^KafkaJS/.test(error.name);
}

export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new T2iError('TIMEOUT', `no answer within ${ms} ms`, { retriable: true })), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
