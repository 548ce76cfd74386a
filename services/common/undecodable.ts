/**
 * One policy, for every service that consumes, for a message it cannot decode (e.g. written with a schema
 * newer than its own, mid rolling upgrade): never skip it and commit past it (its job would stay one row
 * short forever), never dead-letter it (it is not the row's fault). Its partition is paused at that
 * offset, nothing from it on is committed, readiness goes false, and a metric and one error log line say
 * what to do; an upgraded service continues from that offset.
 */
import type { KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import { SCHEMA_HEADER } from './avro.ts';
import { describeError } from './errors.ts';
import { headersToStrings } from './kafka.ts';

export class UndecodableMessages {
  /** `topic:partition` -> why it is paused. */
  private readonly blocked = new Map<string, string>();

  constructor(
    private readonly service: string,
    private readonly logger: Logger,
  ) {}

  /**
   * Records an undecodable message of `topic`/`partition` (the caller pauses the partition and stops
   * taking from it). Logs once per partition.
   */
  block(topic: string, partition: number, message: KafkaMessage, error: unknown): void {
    const key = `${topic}:${partition}`;
    if (this.blocked.has(key)) return;
    const reason = describeError(error);
    this.blocked.set(key, reason);
    this.logger.error(
      { topic, partition, offset: message.offset, schema: headersToStrings(message.headers)[SCHEMA_HEADER] ?? null, err: reason },
      `${this.service}: cannot decode a message (${reason}): ${topic}/${partition} paused at offset ${message.offset}, nothing after it committed, not ready. Fix: for a schema this version does not know, upgrade the ${this.service}; for a schema registry it could not reach, fix the registry and restart the ${this.service}; it continues from this offset`,
    );
  }

  isBlocked(topic: string, partition: number): boolean {
    return this.blocked.has(`${topic}:${partition}`);
  }

  get count(): number {
    return this.blocked.size;
  }
}
