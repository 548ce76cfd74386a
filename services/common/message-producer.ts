import { CompressionTypes, type Kafka, type Message, type Producer, type ProducerConfig } from 'kafkajs';
import { context, type Context } from '@opentelemetry/api';
import type { AvroCodec, MessageName, MessageTypes } from './avro.ts';
import { injectTraceHeaders } from './telemetry.ts';

export interface OutgoingMessage<N extends MessageName> {
  key: string;
  value: MessageTypes[N];
  /** Trace context to carry (traceparent header). Default: the active context. */
  traceContext?: Context;
}

/**
 * Sends our Avro messages: encodes with the newest schema, adds the schema fingerprint and trace headers,
 * and waits for acknowledgement from all in-sync replicas. Idempotent by default, so a retried send
 * never duplicates a message within the producer session.
 */
export class MessageProducer {
  readonly producer: Producer;
  private connected = false;

  constructor(
    kafka: Kafka,
    private readonly codec: AvroCodec,
    options: ProducerConfig = {},
  ) {
    this.producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation: false, ...options });
  }

  async connect(): Promise<void> {
    if (this.connected) return;
    await this.producer.connect();
    this.connected = true;
  }

  encode<N extends MessageName>(name: N, message: OutgoingMessage<N>): Message {
    const { value, headers } = this.codec.encode(name, message.value);
    return { key: message.key, value, headers: injectTraceHeaders(headers, message.traceContext ?? context.active()) };
  }

  /** Sends messages already encoded (encode()), e.g. after sizing them; acknowledged by all in-sync replicas. */
  async sendEncoded(topic: string, messages: Message[], compression = CompressionTypes.None): Promise<void> {
    if (messages.length === 0) return;
    await this.producer.send({ topic, acks: -1, compression, messages });
  }

  /** Sends and resolves once every message is acknowledged by all in-sync replicas. */
  async send<N extends MessageName>(
    topic: string,
    name: N,
    messages: OutgoingMessage<N>[],
    compression = CompressionTypes.None,
  ): Promise<void> {
    if (messages.length === 0) return;
    await this.producer.send({ topic, acks: -1, compression, messages: messages.map((m) => this.encode(name, m)) });
  }

  async disconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.producer.disconnect();
  }
}
