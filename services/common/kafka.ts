import { Kafka, logLevel as KafkaLogLevel, type Admin, type IHeaders, type KafkaConfig as KafkaJsConfig, type ITopicConfig } from 'kafkajs';
import type { Logger } from 'pino';
import { topicNames, type KafkaConfig, type TopicNames } from './config.ts';
import { hasErrorType, T2iError } from './errors.ts';
import { retry } from './retry.ts';

/**
 * A kafkajs client for the configured brokers, with SASL/TLS when set and kafkajs logs routed to pino.
 * `overrides` replace client options (e.g. a shorter connect retry for a CLI command that must give up in seconds).
 */
const KAFKAJS_NOTICES = /Limiting retries for the idempotent producer|default partitioner|KAFKAJS_NO_PARTITIONER_WARNING/;

export function createKafka(
  config: KafkaConfig,
  logger: Logger,
  clientId = config.clientId,
  overrides: Pick<KafkaJsConfig, 'connectionTimeout' | 'retry'> = {},
): Kafka {
  const options: KafkaJsConfig = {
    clientId,
    brokers: [...config.brokers],
    ssl: config.ssl,
    connectionTimeout: 3000,
    requestTimeout: 30_000,
    retry: { initialRetryTime: 200, retries: 8, maxRetryTime: 10_000 },
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ namespace, level, log }) => {
        const { message, ...extra } = log;
        const fields = { kafka: namespace, ...extra };
        // kafkajs notices that say nothing about this deployment (we limit idempotent retries on purpose,
        // and pick partitions ourselves) stay at debug level.
        if (KAFKAJS_NOTICES.test(message)) logger.debug(fields, message);
        else if (level === KafkaLogLevel.ERROR) logger.error(fields, message);
        else if (level === KafkaLogLevel.WARN) logger.warn(fields, message);
        else logger.debug(fields, message);
      },
  };
  if (config.sasl) {
    const { mechanism, username, password } = config.sasl;
    options.sasl = { mechanism, username, password } as NonNullable<KafkaJsConfig['sasl']>;
  }
  return new Kafka({ ...options, ...overrides });
}

export interface TopicLayout {
  /** Partitions of the prompts topic (the most workers that can share it). */
  promptPartitions: number;
  /** Partitions of results/errors/jobs. Default 3. */
  otherPartitions?: number;
  replicationFactor?: number;
}

/** The topic layout the configuration asks for. */
export function topicLayout(config: KafkaConfig): TopicLayout {
  return { promptPartitions: config.promptPartitions, replicationFactor: config.replicationFactor };
}

/** Broker answers while a topic just created has no leader yet. */
const TOPIC_NOT_READY = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/** Creates the four topics of a prefix if they do not exist yet (idempotent). */
export async function ensureTopics(admin: Admin, prefix: string, layout: TopicLayout): Promise<TopicNames> {
  const names = topicNames(prefix);
  const replicationFactor = layout.replicationFactor ?? 1;
  const other = layout.otherPartitions ?? 3;
  const wanted: ITopicConfig[] = [
    { topic: names.prompts, numPartitions: layout.promptPartitions, replicationFactor },
    { topic: names.results, numPartitions: other, replicationFactor },
    { topic: names.errors, numPartitions: other, replicationFactor },
    // Job events are few and read in order by the sink: one partition keeps started < produced < completed.
    { topic: names.jobs, numPartitions: 1, replicationFactor },
  ];
  // A broker busy creating other topics may answer "does not host this topic-partition" while it waits
  // for the new ones' leaders: that is retried (listing again: some may exist by then), nothing else.
  await retry(
    async () => {
      const existing = new Set(await admin.listTopics());
      const missing = wanted.filter((t) => !existing.has(t.topic));
      if (missing.length === 0) return;
      try {
        await admin.createTopics({ topics: missing, waitForLeaders: true });
      } catch (error) {
        // Another process may have created them at the same moment.
        if (!/already exists/i.test(String((error as Error).message))) throw error;
      }
    },
    {
      attempts: 6,
      initialMs: 250,
      retryOn: (error) => hasErrorType(error, TOPIC_NOT_READY),
    },
  );
  return names;
}

/**
 * A topic's partition offsets, retried while the broker answers retriably: under load, or right after
 * ensureTopics created the topic, it may answer NOT_LEADER_FOR_PARTITION.
 */
export function topicOffsets(admin: Admin, topic: string): ReturnType<Admin['fetchTopicOffsets']> {
  return retry(() => admin.fetchTopicOffsets(topic), { attempts: 8, initialMs: 250 });
}

/** Plain-string view of kafkajs headers (Buffers decoded as UTF-8; repeated headers: the last). */
export function headersToStrings(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    const last = Array.isArray(value) ? value[value.length - 1] : value;
    if (last !== undefined) out[key] = Buffer.isBuffer(last) ? last.toString('utf8') : String(last);
  }
  return out;
}

/** Wraps a connect failure in an error that names the brokers. */
export function kafkaUnavailable(config: KafkaConfig, error: unknown): T2iError {
  return new T2iError(
    'KAFKA_UNAVAILABLE',
    `cannot reach Kafka at ${config.brokers.join(',')} (KAFKA_BROKERS); is the broker running? (\`t2i stack up\` starts a local one)`,
    { retriable: true, cause: error },
  );
}
