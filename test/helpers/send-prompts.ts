import type { Kafka } from 'kafkajs';
import type { AvroCodec } from '../../services/common/avro.ts';
import type { PromptRequest } from '../../services/common/messages.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import { retry } from '../../services/common/retry.ts';

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
