/**
 * After inference: each image encoded (PNG with its metadata), uploaded, and its result published; failed
 * prompts published as dead letters. Transient S3/Kafka faults are retried with backoff, never
 * dead-lettered; a result too large for the broker becomes a dead letter of its own. Every prompt is then
 * settled durable, so its offset may be committed.
 */
import { context as otelContext, trace, type Span } from '@opentelemetry/api';
import type { Logger } from 'pino';
import type { TopicNames } from '../common/config.ts';
import { describeError, hasErrorType } from '../common/errors.ts';
import type { Kafka, Message } from 'kafkajs';
import type { MessageProducer, OutgoingMessage } from '../common/message-producer.ts';
import { BATCH_MARGIN, messageBytes, topicMaxMessageBytes } from '../common/topic-limits.ts';
import { promptDeadLetter, type ImageResult, type PromptRequest } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { retry } from '../common/retry.ts';
import { withSpan } from '../common/telemetry.ts';
import { imageKey } from '../common/bucket-layout.ts';
import type { ItemOutcome } from './batch-runner.ts';
import { encodePng, imageMetadata, type GenerateRequest } from './engine/index.ts';
import type { WorkerOptions } from './options.ts';
import type { WorkerMetrics } from './worker-metrics.ts';

/** One prompt on its way through the worker. */
export interface WorkItem {
  request: PromptRequest;
  generate: GenerateRequest;
  shapeKey: string;
  span: Span;
  fetchedAt: number;
  /** true: the outcome is durable (offset may be committed); false: abandoned (the worker stopped on a fatal error). */
  resolve: (durable: boolean) => void;
}

const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** The broker refused a produce request for its size (MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE), anywhere in the cause chain. */
export function isTooLarge(error: unknown): boolean {
  return hasErrorType(error, TOO_LARGE);
}

export interface PublisherDeps {
  producer: MessageProducer;
  store: ObjectStore;
  topics: TopicNames;
  options: WorkerOptions;
  metrics: WorkerMetrics;
  logger: Logger;
  onTransient: (target: string) => (error: unknown, attempt: number, delayMs: number) => void;
  /** The prompt's outcome is settled (true: durable, its offset may be committed). */
  settle: (item: WorkItem, durable: boolean) => void;
  /** max.message.bytes of the results topic as read at start; undefined: unknown (sends split on refusal only). */
  resultsMaxMessageBytes: () => number | undefined;
}

/** A topic's max.message.bytes, read at start; undefined (with a warning) when the broker will not say (no DescribeConfigs right). */
export async function readMaxMessageBytes(kafka: Kafka, topic: string, logger: Logger): Promise<number | undefined> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    return (await topicMaxMessageBytes(admin, [topic]))[topic];
  } catch (error) {
    logger.warn(
      { topic, err: describeError(error) },
      `could not read max.message.bytes of ${topic}: results are sent unsized, and split only when the broker refuses a send`,
    );
    return undefined;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/**
 * Groups records into sends whose record batch stays under `limit` (less the batch header margin), in
 * order; a record that alone does not fit is returned apart.
 */
export function packRecords<T>(entries: T[], bytes: (entry: T) => number, limit: number): { groups: T[][]; tooLarge: T[] } {
  const budget = limit - BATCH_MARGIN;
  const groups: T[][] = [];
  const tooLarge: T[] = [];
  let current: T[] = [];
  let used = 0;
  for (const entry of entries) {
    const size = bytes(entry);
    if (size > budget) {
      tooLarge.push(entry);
      continue;
    }
    if (current.length > 0 && used + size > budget) {
      groups.push(current);
      current = [];
      used = 0;
    }
    current.push(entry);
    used += size;
  }
  if (current.length > 0) groups.push(current);
  return { groups, tooLarge };
}

export function createPublisher(deps: PublisherDeps): (items: WorkItem[], outcomes: ItemOutcome[], engineMs: number) => Promise<void> {
  const { producer, store, topics, options, metrics, logger, onTransient, settle } = deps;
  type ResultEntry = { item: WorkItem; message: OutgoingMessage<'ImageResult'>; encoded: Message };

  /** Encode, upload, publish: retried with backoff on transient S3/Kafka failures, never dead-lettered for them. */
  async function publish(items: WorkItem[], outcomes: ItemOutcome[], engineMs: number): Promise<void> {
    const results: ResultEntry[] = [];
    const letters: { item: WorkItem; message: OutgoingMessage<'DeadLetter'> }[] = [];
    await Promise.all(
      items.map(async (item, index) => {
        const outcome = outcomes[index];
        const r = item.request;
        const ctx = trace.setSpan(otelContext.active(), item.span);
        if (!outcome || !outcome.ok) {
          letters.push({
            item,
            message: {
              key: `${r.jobId}/${r.row}`,
              traceContext: ctx,
              value: promptDeadLetter(
                r,
                'engine',
                outcome && !outcome.ok ? outcome.error : 'no result from the engine',
                outcome && !outcome.ok ? outcome.attempts : 0,
              ),
            },
          });
          return;
        }
        const image = outcome.image;
        const key = imageKey(r.jobId, r.row, r.promptIndex);
        const encodeStart = performance.now();
        const png = await withSpan('worker.encode', {}, ctx, () =>
          encodePng(image, imageMetadata(r.prompt, image), { compressionLevel: options.pngCompression }),
        );
        metrics.encodeSeconds.observe((performance.now() - encodeStart) / 1000);
        const uploadStart = performance.now();
        await withSpan('worker.upload', {}, ctx, () => retry(() => store.put(key, png, 'image/png'), { onRetry: onTransient('s3') }));
        metrics.uploadSeconds.observe((performance.now() - uploadStart) / 1000);
        const value: ImageResult = {
          jobId: r.jobId,
          row: r.row,
          promptIndex: r.promptIndex,
          promptCount: r.promptCount,
          prompt: r.prompt,
          uri: store.uri(key),
          key,
          seed: image.seed,
          width: image.width,
          height: image.height,
          steps: image.steps,
          guidance: image.guidance,
          model: image.model,
          rowJson: r.rowJson,
          worker: options.workerId,
          inferenceMs: engineMs / items.length,
          createdAt: Date.now(),
          truncation: image.truncation ? JSON.stringify(image.truncation) : null,
        };
        const message: OutgoingMessage<'ImageResult'> = { key: `${r.jobId}/${r.row}`, value, traceContext: ctx };
        results.push({ item, message, encoded: producer.encode('ImageResult', message) });
      }),
    );
    const publishStart = performance.now();
    const oversized = new Set<(typeof results)[number]>();
    // Every result carries its row's rowJson, so a micro-batch of big rows can exceed the broker's limit.
    // Sends are sized by the results topic's max.message.bytes (read at start), and a result that alone is
    // over it becomes a dead letter for its item (it fails, the job completes) instead of stalling the
    // partition. Should the broker refuse a send anyway (a limit lowered since), it is split and sent again.
    const tooLarge = (x: ResultEntry, reason: string) => {
      oversized.add(x);
      metrics.oversizedResults.inc();
      letters.push({
        item: x.item,
        message: {
          key: x.message.key,
          traceContext: x.message.traceContext,
          value: promptDeadLetter(
            x.item.request,
            'publish',
            `the image result is larger than the broker accepts on ${topics.results} (${reason}); the image was uploaded to ${x.message.value.uri}. Fix: raise max.message.bytes of that topic or make the row smaller`,
            1,
          ),
        },
      });
    };
    const limit = deps.resultsMaxMessageBytes();
    const packed = limit === undefined ? { groups: [results], tooLarge: [] } : packRecords(results, (x) => messageBytes(x.encoded), limit);
    for (const x of packed.tooLarge) tooLarge(x, `${messageBytes(x.encoded)} bytes, over its max.message.bytes of ${limit}`);
    for (const group of packed.groups) await sendSplitting(topics.results, group, (x, error) => tooLarge(x, describeError(error)));
    await retry(
      () =>
        producer.send(
          topics.errors,
          'DeadLetter',
          letters.map((x) => x.message),
        ),
      { onRetry: onTransient('kafka') },
    );
    metrics.publishSeconds.observe((performance.now() - publishStart) / 1000);
    const published = results.filter((x) => !oversized.has(x));
    metrics.images.inc(published.length);
    metrics.deadLetters.inc(letters.length);
    const now = performance.now();
    for (const { item } of published) metrics.addedLatency.observe(Math.max(0, now - item.fetchedAt - engineMs) / 1000);
    for (const { item } of letters)
      logger.warn({ jobId: item.request.jobId, row: item.request.row, promptIndex: item.request.promptIndex }, 'prompt dead-lettered');
    for (const { item } of [...published, ...letters]) settle(item, true);
  }

  /**
   * Sends `entries` (retrying transient faults). When the broker refuses a send as too large, it is
   * split in halves and retried; an entry that alone is too large goes to `onTooLarge`. Any other
   * non-retriable error propagates.
   */
  async function sendSplitting(
    topic: string,
    entries: ResultEntry[],
    onTooLarge: (entry: ResultEntry, error: unknown) => void,
  ): Promise<void> {
    if (entries.length === 0) return;
    try {
      await retry(
        () =>
          producer.sendEncoded(
            topic,
            entries.map((x) => x.encoded),
          ),
        { onRetry: onTransient('kafka') },
      );
    } catch (error) {
      if (!isTooLarge(error)) throw error;
      metrics.sendsRefused.inc({ topic });
      if (entries.length === 1) return onTooLarge(entries[0]!, error);
      const half = Math.ceil(entries.length / 2);
      logger.warn({ topic, size: entries.length }, `the broker refused a batch of ${entries.length} as too large: sending it in two parts`);
      await sendSplitting(topic, entries.slice(0, half), onTooLarge);
      await sendSplitting(topic, entries.slice(half), onTooLarge);
    }
  }

  return publish;
}
