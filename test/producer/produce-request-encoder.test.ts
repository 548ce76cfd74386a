import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import {
  encodeProduceRequest,
  installFastProduceEncoding,
  type ProduceRequestArgs,
} from '../../services/producer/produce-request-encoder.ts';

const require = createRequire(import.meta.url);
// kafkajs's own encoder, loaded before the patch replaces its export in the require cache.
const original = require('kafkajs/src/protocol/requests/produce/v3/request.js') as (args: ProduceRequestArgs) => {
  encode: () => Promise<{ buffer: Buffer }>;
};
assert.ok(installFastProduceEncoding(), 'kafkajs 2.2.x is installed: the patch applies');

/** Deterministic pseudo-random numbers (a test that fails should fail the same way again). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function bothEncodings(args: ProduceRequestArgs, now = 1_764_000_000_123): Promise<[Buffer, Buffer | undefined]> {
  const realNow = Date.now;
  Date.now = () => now; // both encoders stamp the batch with Date.now()
  try {
    const expected = (await original(args).encode()).buffer;
    const fast = encodeProduceRequest(args);
    return [expected, fast ? (fast as unknown as { buffer: Buffer }).buffer : undefined];
  } finally {
    Date.now = realNow;
  }
}

test('the fast encoder writes the same bytes as kafkajs for keys, values and headers of every accepted kind', async () => {
  const random = lcg(42);
  const text = (n: number) =>
    Array.from({ length: n }, (_, i) => String.fromCharCode(32 + ((i * 7 + Math.floor(random() * 90)) % 90))).join('');
  const shared = { 't2i-schema': 'PromptRequest@0123456789abcdef' };
  const kinds = [
    () => ({ key: `job/${Math.floor(random() * 1e6)}`, value: Buffer.from(text(Math.floor(random() * 300))), headers: shared }),
    () => ({ key: Buffer.from(text(5)), value: text(Math.floor(random() * 200)) }),
    () => ({ key: null, value: null, headers: {} }),
    () => ({ value: Buffer.alloc(0), headers: { a: ['x', Buffer.from('y')], ünï: 'çödé ✓', b: Buffer.from(text(150)) } }),
    () => ({ key: 'k', value: Buffer.from(text(20_000)), headers: { traceparent: `00-${text(32)}-${text(16)}-01`, 't2i-schema': 'x' } }),
  ];
  for (let round = 0; round < 20; round++) {
    const topicData = Array.from({ length: 1 + Math.floor(random() * 3) }, (_, t) => ({
      topic: `topic-${t}-ü`,
      partitions: Array.from({ length: 1 + Math.floor(random() * 4) }, (_, p) => ({
        partition: String(p * 3),
        firstSequence: Math.floor(random() * 2 ** 31),
        messages: Array.from({ length: 1 + Math.floor(random() * 200) }, () => kinds[Math.floor(random() * kinds.length)]!()),
      })),
    }));
    const args: ProduceRequestArgs = {
      acks: round % 2 ? -1 : 1,
      timeout: 30_000,
      transactionalId: round % 5 === 0 ? 'tx-1' : null,
      producerId: round % 3 ? require('kafkajs/src/utils/long.js').fromValue(1234567890123 + round) : undefined,
      producerEpoch: round,
      compression: 0,
      topicData,
    };
    const [expected, fast] = await bothEncodings(args);
    assert.ok(fast, 'the fast path covers this request');
    assert.equal(fast.length, expected.length, `round ${round}: same length`);
    assert.ok(fast.equals(expected), `round ${round}: same bytes`);
  }
});

test('record offset deltas past one varint byte and a batch of one message encode the same', async () => {
  const messages = Array.from({ length: 20_000 }, (_, i) => ({ key: `j/${i}`, value: Buffer.from([i & 0xff]) }));
  for (const list of [messages, messages.slice(0, 1)]) {
    const [expected, fast] = await bothEncodings({
      acks: -1,
      timeout: 1000,
      topicData: [{ topic: 't', partitions: [{ partition: 7, messages: list }] }],
    });
    assert.ok(fast?.equals(expected));
  }
});

test('requests the fast path does not cover are left to kafkajs', async () => {
  const topicData = (message: object) => [{ topic: 't', partitions: [{ partition: 0, messages: [message as { value: Buffer }] }] }];
  assert.equal(
    encodeProduceRequest({ acks: -1, timeout: 1, compression: 1, topicData: topicData({ value: Buffer.from('x') }) }),
    undefined,
  );
  assert.equal(
    encodeProduceRequest({ acks: -1, timeout: 1, topicData: topicData({ value: Buffer.from('x'), timestamp: '5' }) }),
    undefined,
  );
  assert.equal(encodeProduceRequest({ acks: -1, timeout: 1, topicData: topicData({ value: 5 }) }), undefined);
  assert.equal(encodeProduceRequest({ acks: -1, timeout: 1, topicData: topicData({ value: 'v', headers: { h: 5 } }) }), undefined);
});

test('the patched kafkajs module answers every produce version 3 to 7 with the right apiVersion', () => {
  for (let version = 3; version <= 7; version++) {
    const request = (
      require(`kafkajs/src/protocol/requests/produce/v${version}/request.js`) as (a: ProduceRequestArgs) => {
        apiVersion: number;
        apiKey: number;
      }
    )({
      acks: -1,
      timeout: 1,
      topicData: [],
    });
    assert.equal(request.apiVersion, version);
    assert.equal(request.apiKey, 0);
  }
});
