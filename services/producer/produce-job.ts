import type { Kafka, Message } from 'kafkajs';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type SpanContext } from '@opentelemetry/api';
import { openCodec, type AvroCodec } from '../common/avro.ts';
import { topicNames } from '../common/config.ts';
import { T2iError, describeError } from '../common/errors.ts';
import { createKafka, ensureTopics, kafkaUnavailable, topicLayout } from '../common/kafka.ts';
import { silentLogger } from '../common/logger.ts';
import { MessageProducer } from '../common/message-producer.ts';
import { ObjectStore } from '../common/object-store.ts';
import { jobEvent, rowKey, type DeadLetter, type PromptRequest } from '../common/messages.ts';
import { context, injectTraceHeaders, messagingAttributes, messagingSpanName, promptAttributes, tracer } from '../common/telemetry.ts';
import { openInput } from './input.ts';
import { ensureJobIdUnused } from './job-guard.ts';
import { LineSplitter, type InputLine } from './line-splitter.ts';
import type { GenerationOverrides } from './overrides.ts';
import { resolveProduceOptions, type ProduceOptions, type ResolvedProduceOptions } from './options.ts';
import { installFastProduceEncoding } from './produce-request-encoder.ts';
import { PresetPartitioner, RequestBatcher } from './request-batcher.ts';
import { headText, parseLine, type BadRow, type RowRules } from './row-parser.ts';
import { messageBytes, partitionByteBudget, topicMaxMessageBytes } from '../common/topic-limits.ts';
import { isBrokerRefusal, isKafkaError, partitionCounts, withTimeout } from './kafka-answers.ts';
import { promptSeed, seedNamespace } from './seeds.ts';
import type { ProduceProgress, ProduceSummary } from './types.ts';

/** Connect retry of the producer's client: gives up after ~5 s when refused, ~15 s when packets vanish. */
const CONNECT_RETRY = { initialRetryTime: 300, retries: 4, maxRetryTime: 3000 };
/** Send retry once connected: rides out a broker restart of a few tens of seconds. */
const SEND_RETRY = { initialRetryTime: 300, retries: 8, maxRetryTime: 10_000 };

/**
 * Streams a JSONL input onto the prompts topic: one PromptRequest per prompt (key `<jobId>/<row>`), one
 * DeadLetter per bad row, a `started` JobEvent first and a `produced` one with the exact counts last —
 * sent only after every request and error record was acknowledged, so the sink can tell when the job is
 * complete. Resolves with the counts; rejects (after sending a best-effort `failed` event) when the broker
 * cannot be reached or stops acknowledging, the input cannot be read, or `signal` aborts.
 */
export async function produceJob(options: ProduceOptions): Promise<ProduceSummary> {
  const resolved = resolveProduceOptions(options);
  return tracer().startActiveSpan('produce job', { attributes: { 't2i.job_id': resolved.jobId } }, async (span) => {
    try {
      const summary = await runJob(options, resolved);
      span.setAttributes({ 't2i.rows': summary.rows, 't2i.prompts': summary.prompts, 't2i.bad_rows': summary.badRows });
      return summary;
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: describeError(error) });
      throw error;
    } finally {
      span.end();
    }
  });
}

async function runJob(options: ProduceOptions, resolved: ResolvedProduceOptions): Promise<ProduceSummary> {
  const { config } = options;
  const logger = options.logger ?? silentLogger();
  const { jobId, tuning } = resolved;
  const started = Date.now();
  const topics = topicNames(config.kafka.topicPrefix);
  const codec = await openCodec(config);
  // kafkajs's own request encoding costs more CPU than everything else here together (see the module).
  installFastProduceEncoding();

  // A used job id is refused before anything is produced (see job-guard.ts).
  const guardStore = new ObjectStore(config.s3);
  try {
    const { deleted } = await ensureJobIdUnused(guardStore, jobId, options.force ?? false);
    if (deleted > 0) logger.warn({ jobId, deleted }, `--force: deleted ${deleted} objects of the earlier job ${jobId}`);
  } finally {
    guardStore.close();
  }
  const input = await openInput(options.input, config, {
    ...(options.sourceName !== undefined ? { sourceName: options.sourceName } : {}),
    ...(options.totalBytes !== undefined ? { totalBytes: options.totalBytes } : {}),
  });
  const kafka: Kafka =
    options.kafka ??
    // kafkajs logs only with debug logging on: its connect and retry errors repeat what our own error says.
    createKafka(
      config.kafka,
      logger.isLevelEnabled('debug') ? logger : logger.child({}, { level: 'silent' }),
      `${config.kafka.clientId}-producer`,
      {
        connectionTimeout: 2000,
        retry: CONNECT_RETRY,
      },
    );
  const admin = kafka.admin();
  const producer = new MessageProducer(kafka, codec, { createPartitioner: PresetPartitioner, retry: SEND_RETRY });
  let adminConnected = false;

  const progress: ProduceProgress = {
    jobId,
    lines: 0,
    rows: 0,
    prompts: 0,
    badRows: 0,
    bytesRead: 0,
    totalBytes: input.totalBytes,
    acknowledged: 0,
    elapsedMs: 0,
  };
  const report = () => {
    progress.elapsedMs = Date.now() - started;
    options.onProgress?.({ ...progress });
  };

  let sentStarted = false;
  try {
    let partitions: Record<string, number>;
    let maxMessageBytes: Record<string, number>;
    try {
      await withTimeout(admin.connect(), tuning.connectTimeoutMs);
      adminConnected = true;
      await withTimeout(ensureTopics(admin, config.kafka.topicPrefix, topicLayout(config.kafka)), tuning.connectTimeoutMs);
      partitions = await partitionCounts(admin, [topics.prompts, topics.errors]);
      // The broker's real limit of one record batch per topic: rows are checked against it before sending.
      maxMessageBytes = await withTimeout(topicMaxMessageBytes(admin, [topics.prompts, topics.errors]), tuning.connectTimeoutMs);
      await withTimeout(producer.connect(), tuning.connectTimeoutMs);
    } catch (error) {
      throw kafkaUnavailable(config.kafka, error);
    }
    await admin.disconnect().catch(() => {});
    adminConnected = false;

    const paramsJson = JSON.stringify({
      promptKey: resolved.promptKey,
      defaults: resolved.defaults,
      maxPromptChars: resolved.maxPromptChars,
      maxLineBytes: resolved.maxLineBytes,
    });
    await producer.send(topics.jobs, 'JobEvent', [{ key: jobId, value: jobEvent(jobId, 'started', { source: input.source, paramsJson }) }]);
    sentStarted = true;
    logger.debug({ jobId, source: input.source, topic: topics.prompts }, 'job started');

    const maxPartitionBytes = partitionByteBudget(tuning.maxPartitionBytes, maxMessageBytes);
    logger.debug({ maxMessageBytes, maxPartitionBytes }, 'record batch limits');
    const batcher = new RequestBatcher(producer.producer, {
      partitions,
      maxBatchMessages: tuning.maxBatchMessages,
      maxBatchBytes: tuning.maxBatchBytes,
      maxPartitionBytes,
      maxInFlight: tuning.maxInFlight,
      compression: tuning.compression,
      onAcknowledged: (count) => {
        progress.acknowledged += count;
      },
    });
    const rowMessages = new RowMessages(codec, resolved, topics.prompts, topics.errors, batcher, maxPartitionBytes);
    const splitter = new LineSplitter({ maxLineBytes: resolved.maxLineBytes, keepBytes: resolved.maxRawBytes });
    const rules: RowRules = {
      promptKey: resolved.promptKey,
      maxPromptChars: resolved.maxPromptChars,
      maxPromptsPerRow: resolved.maxPromptsPerRow,
      maxLineBytes: resolved.maxLineBytes,
      maxRawBytes: resolved.maxRawBytes,
    };
    const onLine = (line: InputLine) => {
      const outcome = parseLine(line, rules);
      if (outcome === null) return;
      if (outcome.ok && rowMessages.addRow(line.lineNo, outcome.prompts, outcome.overrides, outcome.rowJson)) {
        progress.rows++;
        progress.prompts += outcome.prompts.length;
        return;
      }
      if (!outcome.ok) rowMessages.addBadRow(line.lineNo, outcome);
      progress.badRows++;
    };

    const aborted = () => new T2iError('JOB_FAILED', `job ${jobId} aborted after ${progress.lines} lines`);
    if (options.signal?.aborted) throw aborted();
    try {
      for await (const chunk of input.stream) {
        const bytes = chunk as Buffer;
        progress.bytesRead += bytes.length;
        splitter.push(bytes, onLine);
        progress.lines = splitter.lines;
        report();
        // Backpressure: the next chunk is read only when the broker has caught up enough.
        await batcher.waitForRoom();
        if (options.signal?.aborted) throw aborted();
      }
      splitter.end(onLine);
      progress.lines = splitter.lines;
      await batcher.drain();
    } catch (error) {
      input.stream.destroy();
      await batcher.settle();
      throw error;
    }

    // Every request and error record is acknowledged: the counts below are exactly what the topics hold.
    const summary: ProduceSummary = {
      jobId,
      source: input.source,
      rows: progress.rows,
      prompts: progress.prompts,
      badRows: progress.badRows,
      lines: progress.lines,
      bytesRead: progress.bytesRead,
      requests: batcher.requests,
      elapsedMs: 0,
      topics: { prompts: topics.prompts, errors: topics.errors, jobs: topics.jobs },
    };
    await producer.send(topics.jobs, 'JobEvent', [
      {
        key: jobId,
        value: jobEvent(jobId, 'produced', {
          rows: summary.rows,
          prompts: summary.prompts,
          badRows: summary.badRows,
          source: input.source,
          paramsJson,
        }),
      },
    ]);
    report();
    summary.elapsedMs = Date.now() - started;
    logger.debug({ ...summary }, 'job produced');
    return summary;
  } catch (error) {
    const failure =
      error instanceof T2iError || !isKafkaError(error)
        ? error
        : isBrokerRefusal(error)
          ? new T2iError('JOB_FAILED', `the broker refused a send of job ${jobId}: ${(error as Error).message}`, { cause: error })
          : kafkaUnavailable(config.kafka, error);
    // Tell the sink the job will not complete, unless the broker itself is what failed.
    if (sentStarted && !(failure instanceof T2iError && failure.code === 'KAFKA_UNAVAILABLE')) {
      await producer
        .send(topics.jobs, 'JobEvent', [
          { key: jobId, value: jobEvent(jobId, 'failed', { message: describeError(failure), source: input.source }) },
        ])
        .catch((sendError: unknown) => logger.warn({ err: sendError }, 'could not send the failed event'));
    }
    throw failure;
  } finally {
    input.close();
    if (adminConnected) await admin.disconnect().catch(() => {});
    await producer.disconnect().catch(() => {});
  }
}

/** Encodes the messages of each row and hands them to the batcher; keeps the per-job constants. */
class RowMessages {
  private readonly seeds: string;
  private readonly requestHeaders: Record<string, string>;
  private readonly jobSpanContext: SpanContext | undefined;
  private readonly errorHeaders: Record<string, string>;

  constructor(
    private readonly codec: AvroCodec,
    private readonly job: ResolvedProduceOptions,
    private readonly promptsTopic: string,
    private readonly errorsTopic: string,
    private readonly batcher: RequestBatcher,
    /** Bytes of one record batch, at most: every request of a row goes in one batch, so this bounds the row. */
    private readonly maxBatchBytes: number,
  ) {
    this.seeds = seedNamespace(job.jobId, job.defaults.seed);
    // One trace per prompt (producer → worker → sink), each linked to the job's span. Without a recording
    // tracer (no exporter configured) spans carry nothing, so every message shares one header object.
    const jobSpan = trace.getSpan(context.active());
    this.jobSpanContext = jobSpan?.isRecording() ? jobSpan.spanContext() : undefined;
    this.requestHeaders = injectTraceHeaders(codec.schemaHeaders('PromptRequest'), context.active());
    this.errorHeaders = injectTraceHeaders(codec.schemaHeaders('DeadLetter'), context.active());
  }

  /** Queues the requests of a valid row; returns false when the row had to become an error record instead. */
  addRow(row: number, prompts: string[], overrides: GenerationOverrides, rowJson: string): boolean {
    const { jobId, defaults } = this.job;
    const key = rowKey(jobId, row);
    const partition = this.batcher.partitionOf(this.promptsTopic, key);
    const createdAt = Date.now();
    // Every request carries the whole row: reject a row whose requests cannot fit one record batch before
    // encoding any (a 1 MiB row of many prompts would otherwise be encoded once per prompt, in memory).
    const rowBytes = Buffer.byteLength(rowJson);
    if (rowBytes * prompts.length > this.maxBatchBytes) return this.rowTooLarge(row, rowJson, prompts.length, rowBytes * prompts.length);
    const messages: Message[] = [];
    const sizes: number[] = [];
    let total = 0;
    for (let promptIndex = 0; promptIndex < prompts.length; promptIndex++) {
      const request: PromptRequest = {
        jobId,
        row,
        promptIndex,
        promptCount: prompts.length,
        prompt: prompts[promptIndex]!,
        seed: promptSeed(overrides.seed, this.seeds, row, promptIndex),
        width: overrides.width ?? defaults.width ?? null,
        height: overrides.height ?? defaults.height ?? null,
        steps: overrides.steps ?? defaults.steps ?? null,
        guidance: overrides.guidance ?? defaults.guidance ?? null,
        rowJson,
        createdAt,
      };
      const message: Message = {
        key,
        value: this.codec.encode('PromptRequest', request).value,
        partition,
        headers: this.promptHeaders(request),
      };
      const size = messageBytes(message);
      total += size;
      if (total > this.maxBatchBytes) return this.rowTooLarge(row, rowJson, prompts.length, total);
      messages.push(message);
      sizes.push(size);
    }
    this.batcher.add(this.promptsTopic, messages, sizes);
    return true;
  }

  /** The error record of a row whose requests do not fit one record batch; returns false. */
  private rowTooLarge(row: number, rowJson: string, prompts: number, bytes: number): false {
    const each = prompts > 1 ? `its ${prompts} requests (one per prompt, each carrying the whole row) need` : 'its request needs';
    return this.addBadRow(row, {
      ok: false,
      stage: 'validate',
      error: `row too large: ${each} at least ${bytes} bytes, over the ${this.maxBatchBytes}-byte limit of one record batch (the topic's max.message.bytes less headroom): shorten the row or split its prompts over rows`,
      raw: headText(Buffer.from(rowJson.slice(0, this.job.maxRawBytes)), this.job.maxRawBytes),
    });
  }

  /** Headers of one prompt's request: its own trace (a root span linked to the job's span) when tracing records. */
  private promptHeaders(request: PromptRequest): Record<string, string> {
    if (!this.jobSpanContext) return this.requestHeaders;
    const span = tracer().startSpan(messagingSpanName({ operation: 'send', topic: this.promptsTopic }), {
      root: true,
      kind: SpanKind.PRODUCER,
      links: [{ context: this.jobSpanContext }],
      attributes: {
        ...messagingAttributes({ operation: 'send', topic: this.promptsTopic, key: rowKey(request.jobId, request.row) }),
        ...promptAttributes(request),
      },
    });
    const headers = injectTraceHeaders(this.codec.schemaHeaders('PromptRequest'), trace.setSpan(ROOT_CONTEXT, span));
    span.end();
    return headers;
  }

  /** Queues the error record of a bad row; returns false (the row is not a valid one). */
  addBadRow(row: number, bad: BadRow): false {
    const key = rowKey(this.job.jobId, row);
    const record: DeadLetter = {
      jobId: this.job.jobId,
      row,
      promptIndex: null,
      promptCount: null,
      stage: bad.stage,
      error: bad.error,
      raw: bad.raw,
      prompt: null,
      rowJson: null,
      attempts: 0,
      createdAt: Date.now(),
    };
    const message: Message = {
      key,
      value: this.codec.encode('DeadLetter', record).value,
      partition: this.batcher.partitionOf(this.errorsTopic, key),
      headers: this.errorHeaders,
    };
    let size = messageBytes(message);
    if (size > this.maxBatchBytes && record.raw) {
      // The error record must fit one record batch too: keep less of the line (a topic with a small limit).
      const raw = Buffer.from(record.raw);
      record.raw = headText(raw, Math.max(0, raw.length - (size - this.maxBatchBytes) - 8));
      message.value = this.codec.encode('DeadLetter', record).value;
      size = messageBytes(message);
    }
    this.batcher.add(this.errorsTopic, [message], [size]);
    return false;
  }
}
