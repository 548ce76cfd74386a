import type { Admin, ConfigResourceTypes, Message } from 'kafkajs';

/** kafkajs's ConfigResourceTypes.TOPIC (its CommonJS build does not expose the enum as an ESM named export). */
export const TOPIC_RESOURCE = 2 as ConfigResourceTypes;

/** The broker's default message.max.bytes (Kafka 3.x/4.x): what a topic without its own setting accepts. */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/**
 * Room left in a record batch for the batch's own header (61 bytes) and for the estimate of messageBytes
 * (varint widths), so a batch the batcher counts as `limit - BATCH_MARGIN` bytes is under `limit` on the wire.
 */
export const BATCH_MARGIN = 1024;

/**
 * The largest record batch each topic accepts: its `max.message.bytes` (the topic's own setting, else the
 * broker's `message.max.bytes`), read from the broker at start, so the producer's size checks follow the
 * cluster's real limits rather than an assumed 1 MiB.
 */
export async function topicMaxMessageBytes(admin: Pick<Admin, 'describeConfigs'>, topics: string[]): Promise<Record<string, number>> {
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: topics.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: ['max.message.bytes'] })),
  });
  const out: Record<string, number> = {};
  for (const resource of described.resources) {
    const entry = resource.configEntries.find((e) => e.configName === 'max.message.bytes');
    const value = Number(entry?.configValue);
    out[resource.resourceName] = Number.isSafeInteger(value) && value > 0 ? value : KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
  }
  for (const topic of topics) out[topic] ??= KAFKA_DEFAULT_MAX_MESSAGE_BYTES;
  return out;
}

/** Bytes of one partition's share of a request the batcher may fill: the tuning, capped by the topics' limits. */
export function partitionByteBudget(tuningMaxPartitionBytes: number, limits: Record<string, number>): number {
  let budget = tuningMaxPartitionBytes;
  for (const limit of Object.values(limits)) budget = Math.min(budget, limit - BATCH_MARGIN);
  return Math.max(budget, 1);
}

/** Bytes a message adds to a record batch besides key, value and headers (varints, attributes, deltas). */
const RECORD_OVERHEAD = 24;

const byteLength = (value: unknown) =>
  value === null || value === undefined ? 0 : Buffer.isBuffer(value) ? value.length : Buffer.byteLength(String(value));

/** Size of a message in a record batch, near enough for batching decisions: key, value, headers, overhead. */
export function messageBytes(message: Message): number {
  let size = RECORD_OVERHEAD + byteLength(message.value) + byteLength(message.key);
  for (const [name, value] of Object.entries(message.headers ?? {})) size += Buffer.byteLength(name) + byteLength(value) + 2;
  return size;
}
