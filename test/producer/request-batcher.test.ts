import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { Partitioners } from 'kafkajs';
import { PresetPartitioner, RequestBatcher, murmur2 } from '../../services/producer/request-batcher.ts';

const require = createRequire(import.meta.url);

test('murmur2 equals kafkajs`s (the Java client`s) for ASCII, multi-byte and long keys', () => {
  const kafkajsMurmur2 = require('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: string) => number;
  const keys = ['', 'a', 'ab', 'abc', 'abcd', 'bench/1', 'ünïcødé/✓', '🦊/12', 'x'.repeat(5000)];
  for (let i = 0; i < 5000; i++) keys.push(`job-${i % 97}/${i}${i % 13 === 0 ? 'é' : ''}`);
  for (const key of keys) assert.equal(murmur2(key), kafkajsMurmur2(key), `key ${JSON.stringify(key.slice(0, 20))}`);
});

test('partitionOf picks the partition kafkajs`s DefaultPartitioner picks for the key', () => {
  const batcher = new RequestBatcher(
    { sendBatch: () => Promise.resolve([]) },
    {
      partitions: { t: 12 },
      maxBatchMessages: 10,
      maxBatchBytes: 1000,
      maxPartitionBytes: 1000,
      maxInFlight: 1,
      compression: 'none',
    },
  );
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: 12 }, (_, partitionId) => ({
    partitionId,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  for (let row = 1; row <= 2000; row++) {
    const key = `job-x/${row}`;
    assert.equal(batcher.partitionOf('t', key), partitioner({ topic: 't', partitionMetadata, message: { key, value: null } }));
  }
});

test('PresetPartitioner keeps a message`s own partition and hashes the key of one without', () => {
  const partitioner = PresetPartitioner();
  const partitionMetadata = Array.from({ length: 6 }, (_, partitionId) => ({
    partitionId,
    leader: 0,
    partitionErrorCode: 0,
    replicas: [0],
    isr: [0],
  }));
  assert.equal(partitioner({ topic: 't', partitionMetadata, message: { key: 'k', value: null, partition: 4 } }), 4);
  assert.equal(partitioner({ topic: 't', partitionMetadata, message: { key: 'k', value: null, partition: 0 } }), 0);
  assert.equal(partitioner({ topic: 't', partitionMetadata, message: { key: 'k', value: null } }), (murmur2('k') & 0x7fffffff) % 6);
});
