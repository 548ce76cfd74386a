import { CompressionTypes, type Kafka, type Message, type Producer, type ProducerConfig } from 'kafkajs';
import { context, type Context } from '@opentelemetry/api';
import type { AvroCodec, MessageName, MessageTypes } from './avro.ts';
import { hasErrorType } from './errors.ts';
import { retry } from './retry.ts';
import { injectTraceHeaders } from './telemetry.ts';

export interface OutgoingMessage<N extends MessageName> {
  key: string;
  value: MessageTypes[N];
  /** Trace context to carry (traceparent header). Default: the active context. */
  traceContext?: Context;
}

/**
 * Errors that mean the broker no longer knows this idempotent producer's session (its sequence numbers
 * or producer id), e.g. after a broker was killed before it wrote the producer state down. kafkajs
 * calls them non-retriable: the session is over, but a new producer (a new producer id) can send.
 */
const SESSION_LOST = new Set(['OUT_OF_ORDER_SEQUENCE_NUMBER', 'UNKNOWN_PRODUCER_ID', 'INVALID_PRODUCER_EPOCH']);

export function isProducerSessionLost(error: unknown): boolean {
  return hasErrorType(error, SESSION_LOST);
}

/**
 * Sends our Avro messages: encodes with the newest schema, adds the schema fingerprint and trace headers,
 * and waits for acknowledgement from all in-sync replicas. Idempotent by default, so a retried send
 * never duplicates a message within the producer session. When the broker has lost the session (see
 * isProducerSessionLost), the send is repeated once on a new producer: the messages may then be written
 * twice, which every reader of our topics de-duplicates, rather than never.
 */
export class MessageProducer {
  private current: Producer;
  private connected = false;
  private renewing: Promise<void> | undefined;
  private readonly config: ProducerConfig;

  constructor(
    private readonly kafka: Kafka,
    private readonly codec: AvroCodec,
    options: ProducerConfig = {},
  ) {
    this.config = { idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation: false, ...options };
    this.current = kafka.producer(this.config);
  }

  /** The kafkajs producer now in use (a new one after a lost session). */
  get producer(): Producer {
    return this.current;
  }

  async connect(): Promise<void> {
    if (this.connected) return;
    await this.current.connect();
    this.connected = true;
  }

  private async sendRecord(record: Parameters<Producer['send']>[0]): Promise<void> {
    if (this.renewing) await this.renewing;
    const used = this.current;
    try {
      await used.send(record);
    } catch (error) {
      if (!isProducerSessionLost(error) || !this.connected) throw error;
      await this.renew(used);
      await this.current.send(record);
    }
  }

  /** Replaces `lost` by a new connected producer; concurrent callers that saw the same one share the renewal. */
  private async renew(lost: Producer): Promise<void> {
    if (this.current !== lost) return this.renewing;
    const next = this.kafka.producer(this.config);
    this.current = next;
    this.renewing = (async () => {
      await lost.disconnect().catch(() => {});
      await retry(() => next.connect(), { attempts: 10 });
    })();
    return this.renewing;
  }

  encode<N extends MessageName>(name: N, message: OutgoingMessage<N>): Message {
    const { value, headers } = this.codec.encode(name, message.value);
    return { key: message.key, value, headers: injectTraceHeaders(headers, message.traceContext ?? context.active()) };
  }

  /** Sends messages already encoded (encode()), e.g. after sizing them; acknowledged by all in-sync replicas. */
  async sendEncoded(topic: string, messages: Message[], compression = CompressionTypes.None): Promise<void> {
    if (messages.length === 0) return;
    await this.sendRecord({ topic, acks: -1, compression, messages });
  }

  /** Sends and resolves once every message is acknowledged by all in-sync replicas. */
  async send<N extends MessageName>(
    topic: string,
    name: N,
    messages: OutgoingMessage<N>[],
    compression = CompressionTypes.None,
  ): Promise<void> {
    if (messages.length === 0) return;
    await this.sendRecord({ topic, acks: -1, compression, messages: messages.map((m) => this.encode(name, m)) });
  }

  async disconnect(): Promise<void> {
    if (!this.connected) return;
    this.connected = false;
    await this.renewing?.catch(() => {});
    await this.current.disconnect();
  }
}
