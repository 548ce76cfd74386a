/**
 * MessageProducer when the broker has lost the idempotent producer's session (a broker SIGKILLed before it
 * wrote the producer state down answers OUT_OF_ORDER_SEQUENCE_NUMBER, which kafkajs calls non-retriable):
 * the send is repeated on a new producer instead of failing for good. A fake kafkajs at the seam; the
 * real broker fault is test/faults (SIGKILL the Kafka broker mid-job).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import kafkajs, { type Kafka, type Producer, type ProducerRecord } from 'kafkajs';
import { isProducerSessionLost, MessageProducer } from '../../services/common/message-producer.ts';
import { AvroCodec } from '../../services/common/avro.ts';

// kafkajs's error classes are not ESM named exports (its index spreads them in).
const { KafkaJSNonRetriableError, KafkaJSProtocolError } = kafkajs;

interface FakeProducer {
  sent: ProducerRecord[];
  connects: number;
  disconnects: number;
}

/** A Kafka whose producers fail their first `failures[i]` sends with `error` (producer i in creation order). */
function fakeKafka(error: Error, failures: number[]): { kafka: Kafka; producers: FakeProducer[] } {
  const producers: FakeProducer[] = [];
  const kafka = {
    producer: () => {
      const state: FakeProducer = { sent: [], connects: 0, disconnects: 0 };
      let toFail = failures[producers.length] ?? 0;
      producers.push(state);
      return {
        connect: async () => void state.connects++,
        disconnect: async () => void state.disconnects++,
        send: async (record: ProducerRecord) => {
          if (toFail > 0) {
            toFail--;
            throw error;
          }
          state.sent.push(record);
          return [];
        },
      } as unknown as Producer;
    },
  } as unknown as Kafka;
  return { kafka, producers };
}

const outOfOrder = new KafkaJSProtocolError({
  message: 'The broker received an out of order sequence number',
  type: 'OUT_OF_ORDER_SEQUENCE_NUMBER',
  code: 45,
  retriable: false,
} as unknown as Error);

test('a lost producer session: the send is repeated once on a new, connected producer', async () => {
  const { kafka, producers } = fakeKafka(outOfOrder, [1]);
  const producer = new MessageProducer(kafka, new AvroCodec());
  await producer.connect();
  const messages = [{ key: 'k', value: Buffer.from('v') }];
  await producer.sendEncoded('t', messages);
  assert.equal(producers.length, 2, 'a second producer was created');
  assert.equal(producers[0]!.disconnects, 1, 'the lost one was disconnected');
  assert.equal(producers[1]!.connects, 1, 'the new one was connected');
  assert.deepEqual(
    producers[1]!.sent.map((r) => r.messages),
    [messages],
  );
  // Later sends use the new producer.
  await producer.sendEncoded('t', messages);
  assert.equal(producers[1]!.sent.length, 2);
  assert.equal(producers[0]!.sent.length, 0);
});

test('concurrent sends that hit the same lost session share one new producer', async () => {
  const { kafka, producers } = fakeKafka(outOfOrder, [3]);
  const producer = new MessageProducer(kafka, new AvroCodec());
  await producer.connect();
  const messages = [{ key: 'k', value: Buffer.from('v') }];
  await Promise.all([producer.sendEncoded('a', messages), producer.sendEncoded('b', messages), producer.sendEncoded('c', messages)]);
  assert.equal(producers.length, 2);
  assert.deepEqual(producers[1]!.sent.map((r) => r.topic).sort(), ['a', 'b', 'c']);
});

test('other non-retriable errors still fail the send, on the same producer', async () => {
  const tooLarge = new KafkaJSProtocolError({
    message: 'The request included a message larger than the max message size the server will accept',
    type: 'MESSAGE_TOO_LARGE',
    code: 10,
    retriable: false,
  } as unknown as Error);
  const { kafka, producers } = fakeKafka(tooLarge, [1]);
  const producer = new MessageProducer(kafka, new AvroCodec());
  await producer.connect();
  await assert.rejects(producer.sendEncoded('t', [{ key: 'k', value: Buffer.from('v') }]), /larger than the max message size/);
  assert.equal(producers.length, 1);
});

test('isProducerSessionLost looks through wrapping causes and nothing else', () => {
  assert.equal(isProducerSessionLost(outOfOrder), true);
  assert.equal(isProducerSessionLost(Object.assign(new KafkaJSNonRetriableError('wrapped'), { cause: outOfOrder })), true);
  assert.equal(isProducerSessionLost(new Error('OUT_OF_ORDER_SEQUENCE_NUMBER')), false);
  assert.equal(isProducerSessionLost(undefined), false);
});
