import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { AvroCodec } from '../../services/common/avro.ts';
import { headersToStrings } from '../../services/common/kafka.ts';
import type { JobEvent } from '../../services/common/messages.ts';
import { extractTraceContext, injectTraceHeaders, registerTelemetryBasics } from '../../services/common/telemetry.ts';
import { createTestEnv } from '../helpers/env.ts';
import { readTopicMessages } from '../helpers/topic-reader.ts';

test('produce and consume Avro messages with schema and trace headers on the real broker', async () => {
  registerTelemetryBasics();
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('test');

  const { kafka, topics } = await createTestEnv();
  const codec = new AvroCodec();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const event: JobEvent = {
    jobId: 'j1',
    type: 'produced',
    at: Date.now(),
    rows: 10,
    prompts: 12,
    badRows: 1,
    images: 0,
    errors: 0,
    source: 'f.jsonl',
    paramsJson: null,
    outputUri: null,
    message: null,
  };
  const span = tracer.startSpan('produce');
  const ctx = trace.setSpan(extractTraceContext({}), span);
  const { value, headers } = codec.encode('JobEvent', event);
  await producer.send({ topic: topics.jobs, acks: -1, messages: [{ key: 'j1', value, headers: injectTraceHeaders(headers, ctx) }] });
  span.end();
  await producer.disconnect();

  // The topic's only message, read up to the high watermark.
  const [message] = await readTopicMessages(kafka, topics.jobs);
  assert.ok(message, 'the event is on the jobs topic');
  const received = {
    event: codec.decode('JobEvent', message.value, headersToStrings(message.headers)),
    traceId: trace.getSpanContext(extractTraceContext(message.headers))?.traceId,
  };
  assert.deepEqual({ ...received.event }, event);
  assert.equal(received.traceId, span.spanContext().traceId);
});
