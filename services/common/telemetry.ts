import {
  SpanKind,
  context,
  propagation,
  trace,
  type Context,
  type Span,
  type SpanOptions,
  type Tracer,
  SpanStatusCode,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import type { Env } from './config.ts';

export { SpanStatusCode, context, trace };
export type { Context, Span, Tracer };

let started: { shutdown: () => Promise<void> } | undefined;
let basicsRegistered = false;
let propagatorRegistered = false;

/**
 * Tracing setup for a process. The W3C trace-context propagator is always registered, so trace context
 * crosses Kafka headers even with no exporter (the services pass each message's context explicitly).
 * The OpenTelemetry Node SDK (exporters from the standard OTEL_* variables) and an async context
 * manager start only when an exporter is configured (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_TRACES_EXPORTER
 * other than "none"), so a laptop run exports nothing and pays nothing for it: on Node 20 an
 * AsyncLocalStorage context manager installs promise hooks that cost every promise of the process
 * (bench/e2e: about 0.5 CPU-ms per image in the worker).
 */
export async function initTelemetry(serviceName: string, env: Env = process.env): Promise<{ shutdown: () => Promise<void> }> {
  const wanted =
    (env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || (env.OTEL_TRACES_EXPORTER ?? 'none') !== 'none') &&
    env.OTEL_SDK_DISABLED !== 'true';
  registerPropagator();
  if (!wanted || started) return started ?? { shutdown: async () => {} };
  registerTelemetryBasics();
  const { NodeSDK } = await import('@opentelemetry/sdk-node');
  const sdk = new NodeSDK({ serviceName });
  sdk.start();
  started = { shutdown: () => sdk.shutdown() };
  return started;
}

function registerPropagator(): void {
  if (propagatorRegistered) return;
  propagatorRegistered = true;
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}

/** Registers the propagator and an async context manager once (idempotent; also used by tests that record spans). */
export function registerTelemetryBasics(): void {
  registerPropagator();
  if (basicsRegistered) return;
  basicsRegistered = true;
  const manager = new AsyncLocalStorageContextManager();
  manager.enable();
  context.setGlobalContextManager(manager);
}

/**
 * OpenTelemetry messaging semantic conventions (semconv 1.28, messaging and its Kafka section) for the
 * span of one Kafka message. Span names follow the same conventions: `{operation} {topic}`
 * (`send t2i.prompts`, `process t2i.prompts`, `process t2i.results`). The prompt's own place is in
 * `t2i.job_id`, `t2i.row` and `t2i.prompt_index` (one name per concept across services).
 */
export interface MessageSpanFields {
  operation: 'send' | 'process';
  topic: string;
  partition?: number;
  offset?: string;
  key?: string;
  consumerGroup?: string;
}

export function messagingSpanName(fields: Pick<MessageSpanFields, 'operation' | 'topic'>): string {
  return `${fields.operation} ${fields.topic}`;
}

export function messagingAttributes(fields: MessageSpanFields): Record<string, string | number> {
  return {
    'messaging.system': 'kafka',
    'messaging.operation.type': fields.operation,
    'messaging.operation.name': fields.operation,
    'messaging.destination.name': fields.topic,
    ...(fields.partition !== undefined ? { 'messaging.destination.partition.id': String(fields.partition) } : {}),
    ...(fields.offset !== undefined ? { 'messaging.kafka.offset': Number(fields.offset) } : {}),
    ...(fields.key !== undefined ? { 'messaging.kafka.message.key': fields.key } : {}),
    ...(fields.consumerGroup !== undefined ? { 'messaging.consumer.group.name': fields.consumerGroup } : {}),
  };
}

/** The prompt a span is about, under the one set of names every service uses. */
export function promptAttributes(prompt: { jobId: string; row: number; promptIndex?: number }): Record<string, string | number> {
  return {
    't2i.job_id': prompt.jobId,
    't2i.row': prompt.row,
    ...(prompt.promptIndex !== undefined ? { 't2i.prompt_index': prompt.promptIndex } : {}),
  };
}

/**
 * The `process {topic}` CONSUMER span of one consumed message, with the messaging conventions' attributes
 * and the prompt's, as a child of the trace context its headers carried.
 */
export function startProcessSpan(
  where: { topic: string; partition: number; consumerGroup: string },
  message: { offset: string; key?: Buffer | string | null },
  prompt: { jobId: string; row: number; promptIndex?: number },
  parent: Context,
): Span {
  return tracer().startSpan(
    messagingSpanName({ operation: 'process', topic: where.topic }),
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        ...messagingAttributes({
          operation: 'process',
          topic: where.topic,
          partition: where.partition,
          offset: message.offset,
          ...(message.key ? { key: message.key.toString('utf8') } : {}),
          consumerGroup: where.consumerGroup,
        }),
        ...promptAttributes(prompt),
      },
    },
    parent,
  );
}

export function tracer(): Tracer {
  return trace.getTracer('t2i-stream');
}

/** Writes `traceparent` (and `tracestate`) of the given context into message headers. */
export function injectTraceHeaders(headers: Record<string, string>, ctx: Context = context.active()): Record<string, string> {
  propagation.inject(ctx, headers, {
    set: (carrier, key, value) => {
      carrier[key] = value;
    },
  });
  return headers;
}

/** The remote context carried by message headers (kafkajs headers may be Buffers). */
export function extractTraceContext(headers: Record<string, unknown> | undefined): Context {
  return propagation.extract(context.active(), headers ?? {}, {
    keys: (carrier) => Object.keys(carrier),
    get: (carrier, key) => {
      const value = carrier[key];
      if (value === undefined) return undefined;
      if (Buffer.isBuffer(value)) return value.toString('utf8');
      if (Array.isArray(value)) return value.map((v) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v)));
      return String(value);
    },
  });
}

/** Runs `fn` in a span; records the error and marks the span failed when it throws. */
export async function withSpan<T>(
  name: string,
  options: SpanOptions,
  parent: Context | undefined,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return tracer().startActiveSpan(name, options, parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}
