import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { after } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { loadConfig, topicNames, type Config, type TopicNames } from '../../services/common/config.ts';
import { ensureTopics } from '../../services/common/kafka.ts';
import { TOPIC_RESOURCE, topicMaxMessageBytes } from '../../services/common/topic-limits.ts';
import { ObjectStore } from '../../services/common/object-store.ts';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** A random name part, so tests never share topics, buckets or groups. */
export function randomName(prefix = 't'): string {
  return `${prefix}${randomBytes(4).toString('hex')}`;
}

export interface TestEnv {
  config: Config;
  topics: TopicNames;
  store: ObjectStore;
  kafka: Kafka;
  /** The environment variables that make a child process (worker, sink) use this test's topics and bucket. */
  env: Record<string, string>;
}

/**
 * Topics under a fresh prefix and a fresh bucket on the local stack (started by `npm test`), with
 * cleanup registered on the calling test file: topics deleted, bucket emptied.
 */
export async function createTestEnv(options: { promptPartitions?: number; extraEnv?: Record<string, string> } = {}): Promise<TestEnv> {
  const prefix = `${randomName('test-')}.`;
  const bucket = randomName('test-');
  const env: Record<string, string> = {
    T2I_TOPIC_PREFIX: prefix,
    S3_BUCKET: bucket,
    T2I_PROMPT_PARTITIONS: String(options.promptPartitions ?? 4),
    // The random tiny model (fastest, and what the pipeline tests were written against); tests of the
    // bundled demo model ask for it.
    T2I_MODEL: path.join(PACKAGE_ROOT, 'models', 'tiny-flux'),
    ...options.extraEnv,
  };
  const config = loadConfig({ ...process.env, ...env });
  const kafka = new Kafka({ brokers: [...config.kafka.brokers], logLevel: logLevel.NOTHING, clientId: 't2i-test' });
  const admin = kafka.admin();
  await admin.connect();
  const topics = await ensureTopics(admin, prefix, { promptPartitions: config.kafka.promptPartitions });
  const store = new ObjectStore(config.s3);
  await store.ensureBucket();
  after(async () => {
    try {
      await admin.deleteTopics({ topics: Object.values(topicNames(prefix)) });
    } catch {
      // best effort: a test prefix is random, leftovers do not collide
    }
    await admin.disconnect().catch(() => {});
    await store.deletePrefix('').catch(() => {});
    await store.deleteBucket().catch(() => {});
    store.close();
  });
  return { config, topics, store, kafka, env };
}

/**
 * Sets a topic's max.message.bytes and waits until the broker reports the new value: a config change
 * reaches the broker's answers a moment after alterConfigs returns, and a service started in between
 * would read the old limit.
 */
export async function setMaxMessageBytes(kafka: Kafka, topic: string, bytes: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: TOPIC_RESOURCE, name: topic, configEntries: [{ name: 'max.message.bytes', value: String(bytes) }] }],
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      const read = (await topicMaxMessageBytes(admin, [topic]))[topic];
      if (read === bytes) return;
      if (Date.now() > deadline) throw new Error(`${topic}: max.message.bytes still ${read} 30 s after setting it to ${bytes}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await admin.disconnect();
  }
}
