import type { Kafka } from 'kafkajs';
import type { AvroCodec, MessageName, MessageTypes } from '../../services/common/avro.ts';
import { headersToStrings } from '../../services/common/kafka.ts';
import type { PromptRequest } from '../../services/common/messages.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import { retry } from '../../services/common/retry.ts';
import { randomName } from './env.ts';

export interface Collected<T> {
  value: T;
  headers: Record<string, string>;
  partition: number;
  offset: string;
}

/**
 * Reads a topic from the beginning (own random group) until `done(all)` holds or the timeout passes;
 * then keeps reading for `settleMs` more so late duplicates show up too. Rejects on timeout with what it saw.
 */
export async function collectUntil<N extends MessageName>(
  kafka: Kafka,
  codec: AvroCodec,
  topic: string,
  name: N,
  done: (all: Collected<MessageTypes[N]>[]) => boolean,
  options: { timeoutMs?: number; settleMs?: number } = {},
): Promise<Collected<MessageTypes[N]>[]> {
  const all: Collected<MessageTypes[N]>[] = [];
  const consumer = kafka.consumer({ groupId: randomName('collect-'), maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let finished: () => void = () => {};
  const finishedPromise = new Promise<void>((resolve) => (finished = resolve));
  await consumer.run({
    eachMessage: async ({ message, partition }) => {
      const headers = headersToStrings(message.headers);
      all.push({ value: codec.decode(name, message.value, headers), headers, partition, offset: message.offset });
      if (done(all)) finished();
    },
  });
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  try {
    const ok = await Promise.race([
      finishedPromise.then(() => true),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    if (!ok) throw new Error(`timed out after ${timeoutMs} ms waiting on ${topic}; saw ${all.length} messages`);
    if (options.settleMs) await new Promise((r) => setTimeout(r, options.settleMs));
    return all;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
  }
}

/** Sends PromptRequests for a synthetic job straight onto the prompts topic (the producer's own tests cover parsing). */
export async function sendPrompts(
  kafka: Kafka,
  codec: AvroCodec,
  topic: string,
  jobId: string,
  prompts: (Partial<PromptRequest> & { prompt: string })[],
  extraHeaders: Record<string, string> = {},
): Promise<PromptRequest[]> {
  const producer = new MessageProducer(kafka, codec);
  await producer.connect();
  const requests = prompts.map((p, i): PromptRequest => ({
    jobId,
    row: i + 1,
    promptIndex: 0,
    promptCount: 1,
    seed: 1000 + i,
    width: null,
    height: null,
    steps: null,
    guidance: null,
    rowJson: JSON.stringify({ prompt: p.prompt }),
    createdAt: Date.now(),
    ...p,
  }));
  // Freshly created topics can take a moment to have a leader on every client's metadata.
  const messages = requests.map((value) => {
    const message = producer.encode('PromptRequest', { key: `${jobId}/${value.row}`, value });
    return { ...message, headers: { ...message.headers, ...extraHeaders } };
  });
  await retry(() => producer.producer.send({ topic, acks: -1, messages }), {
    attempts: 10,
    retryOn: () => true,
  });
  await producer.disconnect();
  return requests;
}
