import { context as otelContext, trace, type Context } from '@opentelemetry/api';
import type { Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { topicNames, type Config, type TopicNames } from '../common/config.ts';
import { describeError } from '../common/errors.ts';
import { headersToStrings, kafkaUnavailable } from '../common/kafka.ts';
import { PartitionConsumer, type PartitionBatch } from '../common/partition-consumer.ts';
import type { AvroCodec } from '../common/avro.ts';
import { Lifecycle, type LifecycleState } from '../common/lifecycle.ts';
import { MessageProducer } from '../common/message-producer.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { extractTraceContext, startProcessSpan, tracer, withSpan } from '../common/telemetry.ts';
import { generateWithRecovery, type ItemOutcome } from './batch-runner.ts';
import type { GenerateRequest, ImageEngine } from './engine/index.ts';
import { MicroBatcher } from './micro-batcher.ts';
import { createPublisher, readMaxMessageBytes, type WorkItem } from './publish.ts';
import type { WorkerOptions } from './options.ts';
import { Semaphore } from './semaphore.ts';
import { createWorkerMetrics, type WorkerMetrics } from './worker-metrics.ts';
import { EngineClock } from './engine-clock.ts';

/** Batches given to the engine at once: one running, one waiting in the engine's queue to start the moment it ends. */
export const ENGINE_QUEUE_DEPTH = 2;

export interface WorkerDependencies {
  config: Config;
  options: WorkerOptions;
  kafka: Kafka;
  store: ObjectStore;
  engine: ImageEngine;
  codec: AvroCodec;
  logger: Logger;
  registry: Registry;
}

export interface Worker {
  start(): Promise<void>;
  /** Graceful stop: stop fetching, finish and publish in-flight prompts, commit, leave the group. Idempotent. */
  close(): Promise<void>;
  getState(): LifecycleState;
  /** Engine loaded and consumer group joined. */
  isReady(): boolean;
  readonly metrics: WorkerMetrics;
  /** Rejects when the worker stopped on a fatal engine error (the process should exit non-zero). */
  readonly done: Promise<void>;
}

/**
 * The GPU consumer. Prompts flow: Kafka fetch → admission (bounded in-flight) → micro-batcher (same
 * shape, up to maxBatch or maxWaitMs) → engine (one pass at a time, the next one queued behind it) → PNG encode + upload + publish
 * (up to pipelineDepth batches at once, overlapping the next inference) → offsets resolved in order.
 */
export function createWorker(deps: WorkerDependencies): Worker {
  const { config, options, kafka, store, engine, codec, logger } = deps;
  const topics: TopicNames = topicNames(config.kafka.topicPrefix);
  const metrics = createWorkerMetrics(deps.registry);
  const lifecycle = new Lifecycle(logger);
  const producer = new MessageProducer(kafka, codec);
  let consumer: PartitionConsumer | undefined;
  /** max.message.bytes of the results topic, read at start (undefined if the broker would not say). */
  let resultsMaxMessageBytes: number | undefined;
  let draining = false;
  // The engine's preferred batch size is known once its model is loaded (start()).
  let maxBatch = options.maxBatch ?? 4;
  const defaults = () => engine.info.defaults;
  const batcher = new MicroBatcher<WorkItem>({ maxBatch, maxWaitMs: options.maxWaitMs }, (item) => item.shapeKey);
  // Bounded in-flight work: when full, eachBatch stops taking messages, so fetching pauses (backpressure).
  let admission = new Semaphore(maxBatch * (options.pipelineDepth + 2));
  const postSlots = new Semaphore(options.pipelineDepth);
  const engineSlots = new Semaphore(ENGINE_QUEUE_DEPTH);
  const clock = new EngineClock();
  let inFlight = 0;
  let idle: (() => void) | undefined;
  let inferenceLoop: Promise<void> | undefined;
  let fatal: unknown;
  let rejectDone: (error: unknown) => void = () => {};
  const done = new Promise<void>((_, reject) => (rejectDone = reject));
  done.catch(() => {});

  const publish = createPublisher({
    producer,
    store,
    topics,
    options,
    metrics,
    logger,
    onTransient: (target) => onTransient(target),
    settle: (item, durable) => settle(item, durable),
    resultsMaxMessageBytes: () => resultsMaxMessageBytes,
  });

  const onTransient = (target: string) => (error: unknown, attempt: number, delayMs: number) => {
    metrics.transientRetries.inc({ target });
    logger.warn(
      { target, attempt, delayMs, err: describeError(error) },
      `${target} unavailable, retrying in ${delayMs} ms (nothing is dropped)`,
    );
  };

  function toWorkItem(message: KafkaMessage, where: { topic: string; partition: number }, parent: Context): Promise<boolean> {
    const request = codec.decode('PromptRequest', message.value, headersToStrings(message.headers));
    const d = defaults();
    const generate: GenerateRequest = {
      prompt: request.prompt,
      seed: request.seed,
      width: request.width ?? d.width,
      height: request.height ?? d.height,
      steps: request.steps ?? d.steps,
      guidance: request.guidance ?? d.guidance,
    };
    const span = startProcessSpan(
      { topic: where.topic, partition: where.partition, consumerGroup: options.groupId },
      message,
      request,
      parent,
    );
    return new Promise<boolean>((resolve) => {
      batcher.add({
        request,
        generate,
        shapeKey: `${generate.width}x${generate.height}x${generate.steps}`,
        span,
        fetchedAt: performance.now(),
        resolve,
      });
    });
  }

  /** One prompt leaves the in-flight window: its admission slot frees, and a drain waiting for zero wakes. */
  function releaseSlot(): void {
    inFlight--;
    metrics.inFlight.set(inFlight);
    admission.release();
    if (inFlight <= 0) idle?.();
  }

  /** A prompt's outcome is settled: durable (its offset may be committed) or abandoned. */
  function settle(item: WorkItem, durable: boolean): void {
    item.span.end();
    item.resolve(durable);
    releaseSlot();
  }

  /** Takes a fetched batch's prompts while there is room; each offset is committed after its outcome is durable. */
  async function takeBatch(batch: PartitionBatch): Promise<void> {
    const stopTaking = () => draining || fatal !== undefined || batch.shouldStop();
    for (const message of batch.messages) {
      if (stopTaking()) break;
      if (!(await admission.acquire(stopTaking))) break;
      inFlight++;
      metrics.inFlight.set(inFlight);
      let durable: Promise<boolean>;
      try {
        durable = toWorkItem(message, batch, extractTraceContext(message.headers));
      } catch (error) {
        // A prompt it cannot decode pauses its partition (services/common/undecodable.ts: never skipped or dead-lettered).
        releaseSlot();
        batch.block(message, error);
        break;
      }
      // Committed strictly in order, each only after its image is uploaded and its result acknowledged by
      // the broker: a commit never covers a prompt whose outcome could still be lost.
      batch.track(message.offset, durable);
    }
  }

  /**
   * Forms batches and hands them to the engine, up to ENGINE_QUEUE_DEPTH at once: the next batch waits in
   * the engine's own queue while the current one runs, so the engine starts it the moment the current one
   * ends instead of after a round trip through this thread (which is busy encoding and uploading).
   */
  async function runInference(): Promise<void> {
    const running = new Set<Promise<void>>();
    for (;;) {
      await engineSlots.acquire();
      const waitStart = performance.now();
      const items = await batcher.next();
      if (!items) break;
      if (items.length === 0) {
        engineSlots.release();
        continue;
      }
      const batchedAt = performance.now();
      metrics.engineStarvedSeconds.inc(clock.idleSinceMs(waitStart) / 1000);
      await postSlots.acquire();
      metrics.engineBlockedSeconds.inc(clock.idleSinceMs(batchedAt) / 1000);
      const batch = runBatch(items).finally(() => {
        engineSlots.release();
        running.delete(batch);
      });
      running.add(batch);
    }
    await Promise.all(running);
  }

  /** One batch: inference (with recovery), then encode, upload and publish in the background. */
  async function runBatch(items: WorkItem[]): Promise<void> {
    const batchSpan = tracer().startSpan('worker.batch', {
      attributes: { 't2i.batch_size': items.length },
      links: items.map((item) => ({ context: item.span.spanContext() })),
    });
    const timed = clock.timed(engine);
    let outcomes: ItemOutcome[];
    try {
      outcomes = await withSpan('worker.inference', {}, trace.setSpan(otelContext.active(), batchSpan), () =>
        generateWithRecovery(
          timed.engine,
          items.map((i) => i.generate),
          {
            maxAttempts: options.maxAttempts,
            onFailure: (size, error) => {
              metrics.engineFailures.inc();
              logger.warn({ size, err: describeError(error) }, 'engine pass failed: splitting/retrying');
            },
            onOutOfMemory: (size) => {
              metrics.outOfMemory.inc();
              const next = Math.max(1, Math.min(maxBatch, Math.floor(size / 2)));
              if (next < maxBatch) {
                logger.warn(
                  { from: maxBatch, to: next },
                  `engine out of memory at batch ${size}: batch size lowered to ${next} for the rest of this run`,
                );
                maxBatch = next;
                batcher.setMaxBatch(next);
                metrics.maxBatch.set(next);
              }
            },
          },
        ),
      );
    } catch (error) {
      // The engine itself is gone (its thread died, it was closed): stop this worker without
      // dead-lettering or committing anything; the prompts go to another worker or a restarted one.
      batchSpan.end();
      postSlots.release();
      abandon(error, items, 'the engine failed for good');
      return;
    }
    const engineMs = timed.elapsedMs();
    metrics.batchSize.observe(items.length);
    metrics.inferenceSeconds.observe(engineMs / 1000);
    void publish(items, outcomes, engineMs)
      // Only a non-retriable fault reaches here (transient ones are waited out inside): a deleted
      // bucket, a denied PutObject, a dead letter over the broker's limit. Waiting cannot help, so the
      // worker stops not-ready and exits non-zero; the batch stays uncommitted for a fixed deployment.
      .catch((error: unknown) => abandon(error, items, 'publishing a batch failed with an error that waiting cannot fix'))
      .finally(() => {
        batchSpan.end();
        postSlots.release();
      });
  }

  async function start(): Promise<void> {
    lifecycle.transition('STARTING');
    await engine.load();
    maxBatch = options.maxBatch ?? engine.info.preferredBatchSize;
    batcher.setMaxBatch(maxBatch);
    admission = new Semaphore(maxBatch * (options.pipelineDepth + 2));
    metrics.maxBatch.set(maxBatch);
    try {
      await producer.connect();
    } catch (error) {
      throw kafkaUnavailable(config.kafka, error);
    }
    resultsMaxMessageBytes = await readMaxMessageBytes(kafka, topics.results, logger);
    consumer = new PartitionConsumer({
      kafka,
      kafkaConfig: config.kafka,
      logger,
      service: 'worker',
      groupId: options.groupId,
      topics: [topics.prompts],
      sessionTimeoutMs: options.sessionTimeoutMs,
      rebalanceTimeoutMs: Math.max(60_000, options.sessionTimeoutMs * 2),
      maxBytesPerPartition: options.maxBytesPerPartition,
      maxWaitTimeInMs: 250,
      // Every assigned partition feeds the one batcher at once, so batches mix partitions.
      partitionsConsumedConcurrently: 64,
      awaitEffects: true,
      commitIntervalMs: 1000,
      beforeBatch: (messages) => codec.loadWriterSchemas(messages),
      lag: metrics.lag,
      onUndecodable: (topic, paused) => {
        metrics.undecodable.inc({ service: 'worker', topic });
        metrics.blockedPartitions.set(paused);
      },
    });
    consumer.done.catch((error: unknown) => abandon(error, [], 'the Kafka consumer stopped for good'));
    inferenceLoop = runInference();
    await consumer.start(takeBatch);
    lifecycle.transition('RUNNING');
    logger.info(
      {
        model: engine.info.model,
        provider: engine.info.provider,
        maxBatch,
        maxWaitMs: options.maxWaitMs,
        pipelineDepth: options.pipelineDepth,
        topic: topics.prompts,
        group: options.groupId,
      },
      'worker running',
    );
  }

  /**
   * Stops on a fatal error (the engine is gone, or S3/Kafka refuse for good): every queued prompt is
   * abandoned (not committed), readiness goes false and `done` rejects (the process exits non-zero).
   */
  function abandon(error: unknown, items: WorkItem[], what: string): void {
    fatal ??= error;
    logger.fatal({ err: describeError(error) }, `${what}: stopping this worker; its prompts stay uncommitted for another worker`);
    batcher.close();
    for (const item of [...items, ...batcher.takeAll()]) settle(item, false);
    admission.wakeAll();
    rejectDone(error);
  }

  async function drain(): Promise<void> {
    draining = true;
    admission.wakeAll();
    batcher.drain();
    if (inFlight > 0 && fatal === undefined) await new Promise<void>((resolve) => (idle = resolve));
    // eachBatch calls return once their last offsets are committed; disconnect waits for them, then leaves the group.
    await consumer?.stop();
    batcher.close();
    await inferenceLoop;
    await producer.disconnect();
  }

  return {
    start,
    close: () => lifecycle.close(drain),
    getState: () => lifecycle.getState(),
    isReady: () => lifecycle.getState() === 'RUNNING' && consumer?.isReady() === true && fatal === undefined,
    metrics,
    done,
  };
}
