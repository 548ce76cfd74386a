/**
 * The one Kafka consumer the worker and the sink run on (and the sink's job-events reader). It owns what
 * every consuming service needs and must get right the same way:
 * - offsets committed in order, each only after the effect of its message is durable (an uploaded image
 *   and an acknowledged result; a spilled part): `batch.track(offset, effect)`. An effect that settles
 *   `false` (abandoned) stops commits of its partition, so a later commit never covers it;
 * - heartbeats while a handler works (long GPU batches, long spills), and a rebalance seen by a heartbeat
 *   tells the handler to stop taking messages;
 * - group join / crash handling: `isReady()`, and `done` rejects when kafkajs gives up on the consumer
 *   (a crash it will not restart), so the service stops not-ready instead of idling with green checks;
 * - the lag gauge, per topic and partition;
 * - one policy for a message its service cannot decode (undecodable.ts): its partition pauses at it,
 *   nothing after it is committed, readiness goes false; never skip-and-commit.
 */
import type { Consumer, EachBatchPayload, Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import type { Gauge } from 'prom-client';
import { T2iError, describeError } from './errors.ts';
import { kafkaUnavailable } from './kafka.ts';
import type { KafkaConfig } from './config.ts';
import { UndecodableMessages } from './undecodable.ts';

export interface PartitionConsumerOptions {
  kafka: Kafka;
  /** For the "cannot reach Kafka" error at start. */
  kafkaConfig: KafkaConfig;
  logger: Logger;
  /** Names the service in logs and errors ("worker", "sink", "sink job events"). */
  service: string;
  groupId: string;
  topics: string[];
  sessionTimeoutMs: number;
  rebalanceTimeoutMs?: number;
  maxBytes?: number;
  maxBytesPerPartition?: number;
  /** Longest a fetch waits at the broker: it also bounds how long a stop waits for the fetch in flight. */
  maxWaitTimeInMs: number;
  partitionsConsumedConcurrently?: number;
  /**
   * true: a batch handler's call ends only once every effect it tracked has settled and its offsets are
   * committed, so a rebalance (which waits for running handlers) never moves a partition with work in
   * flight. false: effects settle later (the sink's spills), and offsets are committed as they do.
   */
  awaitEffects: boolean;
  /** Committed offsets are sent at most this often while a batch runs (0: as soon as an effect settles). */
  commitIntervalMs: number;
  /** false: a reader that never commits (the sink's private job-events group re-reads from the start). */
  commits?: boolean;
  /** Consumer lag per topic and partition (the service's own metric name). */
  lag?: Gauge<'topic' | 'partition'>;
  /** Counts undecodable messages and paused partitions (the service's own metrics). */
  onUndecodable?: (topic: string, pausedPartitions: number) => void;
  /** After every group join (e.g. to start a "caught up" timer). */
  onJoin?: () => void;
  /** Runs before a batch is handed over (e.g. fetch the writer schemas its messages name from a registry). */
  beforeBatch?: (messages: KafkaMessage[]) => Promise<void>;
}

/** One fetched batch of one partition, as a handler sees it. */
export interface PartitionBatch {
  readonly topic: string;
  readonly partition: number;
  readonly messages: KafkaMessage[];
  /** True once the handler should stop taking messages: stopping, rebalance, stale batch, partition paused. */
  shouldStop(): boolean;
  /**
   * `offset` and every message before it in this partition were taken: once `effect` resolves true (and
   * every earlier effect did), they are committed. `false` abandons them: nothing from here on in this
   * partition is committed by this consumer. Call in offset order.
   */
  track(offset: string, effect: Promise<boolean> | true): void;
  /** `message` cannot be decoded: its partition pauses at it (undecodable.ts). Stop taking after this. */
  block(message: KafkaMessage, error: unknown): void;
  heartbeat(): Promise<void>;
}

const isRebalance = (error: unknown) =>
  /REBALANCE_IN_PROGRESS|NOT_COORDINATOR|UNKNOWN_MEMBER_ID|ILLEGAL_GENERATION|rebalancing/i.test(
    `${(error as { type?: string }).type ?? ''} ${(error as Error).message}`,
  );

/** The in-order commit position of one partition. */
class Trail {
  /** Settles in offset order: each tracked effect is chained after the ones before it. */
  tail: Promise<void> = Promise.resolve();
  abandoned = false;
  constructor(readonly generation: number) {}
}

export class PartitionConsumer {
  private consumer: Consumer | undefined;
  private joined = false;
  private stopping = false;
  private generation = 0;
  private readonly trails = new Map<string, Trail>();
  /** Next offset to commit per `topic:partition`, not sent yet. */
  private readonly toCommit = new Map<string, { topic: string; partition: number; offset: string }>();
  private lastCommit = 0;
  private committing: Promise<void> = Promise.resolve();
  private readonly undecodable: UndecodableMessages;
  private rejectDone: (error: unknown) => void = () => {};
  /** Rejects when the consumer crashed and kafkajs will not restart it (the service should stop, non-zero). */
  readonly done = new Promise<void>((_, reject) => (this.rejectDone = reject));

  constructor(private readonly options: PartitionConsumerOptions) {
    this.done.catch(() => {});
    this.undecodable = new UndecodableMessages(options.service, options.logger);
  }

  /** Joined its group, and no partition is paused on an undecodable message. */
  isReady(): boolean {
    return this.joined && this.undecodable.count === 0;
  }

  /** Partitions paused on a message this service cannot decode. */
  get pausedPartitions(): number {
    return this.undecodable.count;
  }

  /** Connects, subscribes and starts handing batches to `handler`. */
  async start(handler: (batch: PartitionBatch) => Promise<void>): Promise<void> {
    const o = this.options;
    const heartbeatInterval = Math.min(3000, Math.floor(o.sessionTimeoutMs / 3));
    const consumer = o.kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeoutMs,
      ...(o.rebalanceTimeoutMs !== undefined ? { rebalanceTimeout: o.rebalanceTimeoutMs } : {}),
      heartbeatInterval,
      ...(o.maxBytes !== undefined ? { maxBytes: o.maxBytes } : {}),
      ...(o.maxBytesPerPartition !== undefined ? { maxBytesPerPartition: o.maxBytesPerPartition } : {}),
      maxWaitTimeInMs: o.maxWaitTimeInMs,
      allowAutoTopicCreation: false,
      // kafkajs restarts a crashed consumer on a timer; a crash while stopping (e.g. its topics deleted)
      // would otherwise restart it after stop() and keep the process alive forever.
      retry: { retries: 5, restartOnFailure: async () => !this.stopping },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      this.joined = true;
      // Commits still pending from before the rebalance belong to an old assignment: the partition's new
      // owner reads those messages again (the services are idempotent), so they are not committed.
      this.generation++;
      this.toCommit.clear();
      o.logger.debug(
        { memberId: event.payload.memberId, assignment: event.payload.memberAssignment },
        `${o.service}: joined consumer group`,
      );
      o.onJoin?.();
    });
    consumer.on(consumer.events.CRASH, (event) => {
      this.joined = false;
      const { error, restart } = event.payload;
      o.logger.error({ err: describeError(error), restart }, `${o.service}: consumer crashed${restart ? ' (restarting)' : ''}`);
      if (!restart && !this.stopping)
        this.rejectDone(new T2iError('KAFKA_UNAVAILABLE', `${o.service} consumer stopped: ${describeError(error)}`, { cause: error }));
    });
    try {
      await consumer.connect();
    } catch (error) {
      throw kafkaUnavailable(o.kafkaConfig, error);
    }
    // fromBeginning applies only to a group without committed offsets: a new group reads everything.
    await consumer.subscribe({ topics: o.topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: o.partitionsConsumedConcurrently ?? 1,
      eachBatch: (payload) => this.eachBatch(payload, handler),
    });
  }

  private async eachBatch(payload: EachBatchPayload, handler: (batch: PartitionBatch) => Promise<void>): Promise<void> {
    const { batch } = payload;
    const { topic, partition } = batch;
    if (this.stopping || this.undecodable.isBlocked(topic, partition)) return;
    this.options.lag?.set({ topic, partition: String(partition) }, Number(batch.offsetLag()));
    await this.options.beforeBatch?.(batch.messages);
    let rebalancing = false;
    const beat = setInterval(
      () =>
        void payload.heartbeat().catch((error: unknown) => {
          if (isRebalance(error)) rebalancing = true;
        }),
      Math.min(2000, Math.floor(this.options.sessionTimeoutMs / 3)),
    );
    const settled: Promise<void>[] = [];
    try {
      await handler({
        topic,
        partition,
        messages: batch.messages,
        shouldStop: () =>
          this.stopping || rebalancing || !payload.isRunning() || payload.isStale() || this.undecodable.isBlocked(topic, partition),
        track: (offset, effect) => {
          // The fetch position moves on at once (kafkajs would fetch these messages again otherwise); the
          // commit waits for the effect.
          payload.resolveOffset(offset);
          settled.push(this.track(topic, partition, offset, effect));
        },
        block: (message, error) => {
          this.undecodable.block(topic, partition, message, error);
          this.options.onUndecodable?.(topic, this.undecodable.count);
          payload.pause();
        },
        heartbeat: () => payload.heartbeat(),
      });
      if (this.options.awaitEffects) {
        await Promise.all(settled);
        await this.commitSettled();
      }
    } finally {
      clearInterval(beat);
    }
  }

  private track(topic: string, partition: number, offset: string, effect: Promise<boolean> | true): Promise<void> {
    const key = `${topic}:${partition}`;
    let trail = this.trails.get(key);
    if (!trail || trail.generation !== this.generation) {
      // A partition (re)assigned since its last batch starts a fresh trail: what was abandoned before a
      // rebalance was not committed, and the group's committed offset is where this batch started.
      trail = new Trail(this.generation);
      this.trails.set(key, trail);
    }
    const t = trail;
    t.tail = t.tail
      .then(() => effect)
      .then((durable) => {
        if (!durable) t.abandoned = true;
        if (t.abandoned || this.options.commits === false || t.generation !== this.generation) return;
        this.toCommit.set(key, { topic, partition, offset: (BigInt(offset) + 1n).toString() });
        if (Date.now() - this.lastCommit >= this.options.commitIntervalMs) void this.commitSettled();
      });
    return t.tail;
  }

  /**
   * Commits the offsets whose effects have settled (after letting effects that just resolved run their
   * callbacks). Commits are sent one at a time, in order. A failed commit is logged: the messages are read
   * again after a restart or rebalance, which the services de-duplicate.
   */
  commitSettled(): Promise<void> {
    this.committing = this.committing.then(async () => {
      // Reactions to effects resolved just before this call run before the next macrotask.
      await new Promise((resolve) => setImmediate(resolve));
      if (this.toCommit.size === 0 || !this.consumer) return;
      const offsets = [...this.toCommit.values()];
      this.toCommit.clear();
      this.lastCommit = Date.now();
      try {
        await this.consumer.commitOffsets(offsets);
      } catch (error) {
        this.options.logger.warn(
          { err: describeError(error), offsets },
          `${this.options.service}: offset commit failed (those messages may be read again, and are de-duplicated)`,
        );
      }
    });
    return this.committing;
  }

  /** Stops fetching, commits what has settled, leaves the group. Idempotent. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (!this.consumer) return;
    await this.commitSettled();
    await this.consumer.disconnect();
    this.joined = false;
  }
}
