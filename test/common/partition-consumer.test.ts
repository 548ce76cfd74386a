/**
 * The partition consumer every consuming service runs on, against the real broker: offsets are committed
 * in order and only after their effects; an abandoned effect stops its partition's commits; a message
 * that cannot be decoded pauses its partition and readiness; a crash kafkajs will not restart rejects
 * `done` (the service stops instead of idling with green checks).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import kafkajs, { type Kafka, type KafkaMessage } from 'kafkajs';
import { silentLogger } from '../../services/common/logger.ts';
import { PartitionConsumer, type PartitionBatch } from '../../services/common/partition-consumer.ts';
import { createTestEnv, randomName, type TestEnv } from '../helpers/env.ts';

/** A promise with its resolve function. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => {};
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

async function produce(kafka: Kafka, topic: string, count: number): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: Array.from({ length: count }, (_, i) => ({ value: `m${i}` })) });
  await producer.disconnect();
}

/** The group's committed offset of partition 0 (-1: none). */
async function committed(kafka: Kafka, groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [entry] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return Number(entry?.partitions.find((p) => p.partition === 0)?.offset ?? -1);
  } finally {
    await admin.disconnect();
  }
}

function consumerFor(
  env: TestEnv,
  groupId: string,
  extra: Partial<ConstructorParameters<typeof PartitionConsumer>[0]> = {},
): PartitionConsumer {
  return new PartitionConsumer({
    kafka: env.kafka,
    kafkaConfig: env.config.kafka,
    logger: silentLogger(),
    service: 'test',
    groupId,
    topics: [env.topics.prompts],
    sessionTimeoutMs: 10_000,
    maxWaitTimeInMs: 100,
    awaitEffects: false,
    commitIntervalMs: 0,
    ...extra,
  });
}

test('offsets are committed in order and only after their effects; an abandoned effect stops the partition’s commits', async () => {
  const env = await createTestEnv({ promptPartitions: 1 });
  await produce(env.kafka, env.topics.prompts, 6);
  const groupId = randomName('group-');
  const consumer = consumerFor(env, groupId);
  const effects: { offset: number; d: ReturnType<typeof deferred<boolean>> }[] = [];
  const allTracked = deferred<void>();
  await consumer.start(async (batch: PartitionBatch) => {
    for (const message of batch.messages) {
      const d = deferred<boolean>();
      effects.push({ offset: Number(message.offset), d });
      batch.track(message.offset, d.promise);
    }
    if (effects.length >= 6) allTracked.resolve();
  });
  try {
    await allTracked.promise;
    const settle = async (index: number, durable: boolean) => {
      effects[index]!.d.resolve(durable);
      await consumer.commitSettled();
      return committed(env.kafka, groupId, env.topics.prompts);
    };
    assert.equal(await settle(2, true), -1, 'a later effect alone commits nothing');
    assert.equal(await settle(0, true), effects[0]!.offset + 1, 'the first effect commits through the first message');
    assert.equal(await settle(1, true), effects[2]!.offset + 1, 'the gap closes: committed through the third');
    assert.equal(await settle(3, false), effects[2]!.offset + 1, 'an abandoned effect is not committed');
    assert.equal(await settle(4, true), effects[2]!.offset + 1, 'nor anything after it');
  } finally {
    await consumer.stop();
  }
});

test('a message it cannot decode pauses its partition there: not ready, counted, nothing from it on committed', async () => {
  const env = await createTestEnv({ promptPartitions: 1 });
  await produce(env.kafka, env.topics.prompts, 4);
  const groupId = randomName('group-');
  const counted: number[] = [];
  const consumer = consumerFor(env, groupId, { onUndecodable: (_topic, paused) => counted.push(paused) });
  const seen: KafkaMessage[] = [];
  const blocked = deferred<void>();
  await consumer.start(async (batch) => {
    for (const message of batch.messages) {
      if (batch.shouldStop()) break;
      seen.push(message);
      if (message.value?.toString() === 'm2') {
        batch.block(message, new Error('unknown writer schema'));
        blocked.resolve();
        break;
      }
      batch.track(message.offset, true);
    }
  });
  try {
    await blocked.promise;
    await consumer.commitSettled();
    assert.deepEqual(
      seen.map((m) => m.value?.toString()),
      ['m0', 'm1', 'm2'],
      'the handler stops taking at the undecodable message',
    );
    assert.equal(await committed(env.kafka, groupId, env.topics.prompts), Number(seen[2]!.offset), 'committed up to it, not past it');
    assert.equal(consumer.isReady(), false, 'not ready while a partition is paused');
    assert.equal(consumer.pausedPartitions, 1);
    assert.deepEqual(counted, [1], 'the service is told once');
  } finally {
    await consumer.stop();
  }
});

test('a crash kafkajs will not restart rejects done (the service stops instead of idling)', { timeout: 30_000 }, async () => {
  const env = await createTestEnv({ promptPartitions: 1 });
  await produce(env.kafka, env.topics.prompts, 1);
  const consumer = consumerFor(env, randomName('group-'));
  await consumer.start(async () => {
    throw new kafkajs.KafkaJSNonRetriableError('the handler failed for good');
  });
  try {
    await assert.rejects(consumer.done, (error: Error & { code?: string }) => {
      assert.equal(error.code, 'KAFKA_UNAVAILABLE');
      assert.match(error.message, /test consumer stopped: .*the handler failed for good/);
      return true;
    });
    assert.equal(consumer.isReady(), false);
  } finally {
    await consumer.stop();
  }
});
