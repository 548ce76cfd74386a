import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import sharp from 'sharp';
import { AvroCodec } from '../../services/common/avro.ts';
import { loadConfig } from '../../services/common/config.ts';
import { type ImageResult } from '../../services/common/messages.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import {
  createFluxPipeline,
  EngineError,
  readPngMetadata,
  type GenerateRequest,
  withGenerate,
  type ImageEngine,
} from '../../services/worker/engine/index.ts';
import { injectTraceHeaders, registerTelemetryBasics } from '../../services/common/telemetry.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';
import { sendPrompts } from '../helpers/send-prompts.ts';
import { readTopic, topicSize, waitForCommitted, watchTopic, type TopicRecord } from '../helpers/topic-reader.ts';
import { startTestWorker } from '../helpers/worker.ts';
import { imageKey } from '../../services/common/bucket-layout.ts';

const codec = new AvroCodec();
registerTelemetryBasics();
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));
const keyOf = (r: Pick<ImageResult, 'jobId' | 'row' | 'promptIndex'>) => `${r.jobId}/${r.row}/${r.promptIndex}`;
/** The distinct result keys, sorted, against the keys of the prompts sent: one result per prompt, none other. */
const resultKeys = (all: TopicRecord<ImageResult>[]) => [...new Set(all.map((m) => keyOf(m.value)))].sort();
const distinct = (all: TopicRecord<ImageResult>[]) => resultKeys(all).length;
const sentKeys = (sent: Pick<ImageResult, 'jobId' | 'row' | 'promptIndex'>[]) => sent.map(keyOf).sort();

test('N prompts in: N images at their keys with PNG metadata, N results, trace context carried', async () => {
  const t = await createTestEnv();
  const { stop } = await startTestWorker(t.config, { groupId: randomName('workers-') });
  after(stop);
  const prompts = [
    { prompt: 'a red fox in snow' },
    { prompt: 'a lighthouse at dusk', width: 32, height: 48 },
    { prompt: 'a small robot', steps: 2, guidance: 5 },
    { prompt: 'a mountain lake', promptIndex: 1, promptCount: 2, row: 3 },
    { prompt: 'a rainy street' },
  ];
  // The producer side of a trace: each prompt message carries its own traceparent.
  const producerSpan = trace.getTracer('test').startSpan('produce');
  const traceId = producerSpan.spanContext().traceId;
  const traceHeaders = injectTraceHeaders({}, trace.setSpan(trace.deleteSpan(context.active()), producerSpan));
  producerSpan.end();
  const sent = await sendPrompts(t.kafka, codec, t.topics.prompts, 'job-basic', prompts, traceHeaders);
  const results = await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= sent.length, 90_000);
  assert.deepEqual(resultKeys(results), sentKeys(sent), 'a result for every prompt sent, and for nothing else');
  for (const request of sent) {
    const result = results.find((m) => m.value.row === request.row && m.value.promptIndex === request.promptIndex)?.value;
    assert.ok(result, `no result for row ${request.row}`);
    const key = imageKey('job-basic', request.row, request.promptIndex);
    assert.equal(result.key, key);
    assert.equal(result.uri, `s3://${t.config.s3.bucket}/${key}`);
    assert.equal(result.rowJson, request.rowJson);
    assert.equal(result.seed, request.seed);
    const png = await t.store.get(key);
    assert.ok(png, `image ${key} missing`);
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, request.width ?? 64);
    assert.equal(meta.height, request.height ?? 64);
    const text = readPngMetadata(png);
    assert.equal(text?.prompt, request.prompt);
    assert.equal(text?.seed, request.seed);
    assert.equal(text?.steps, request.steps ?? result.steps);
    assert.equal(text?.guidance, request.guidance ?? result.guidance);
    assert.equal(text?.model, result.model);
  }
  // Trace: each result continues the producer's trace; the worker made prompt, batch, inference, encode and upload spans.
  for (const m of results) assert.equal(m.headers.traceparent?.split('-')[1], traceId, 'the result continues the producer trace');
  const names = spans.getFinishedSpans().map((s) => s.name);
  const promptSpan = `process ${t.topics.prompts}`;
  for (const name of [promptSpan, 'worker.batch', 'worker.inference', 'worker.encode', 'worker.upload'])
    assert.ok(names.includes(name), `span ${name} recorded`);
  const promptSpans = spans.getFinishedSpans().filter((s) => s.name === promptSpan);
  assert.ok(promptSpans.length >= sent.length && promptSpans.every((s) => s.spanContext().traceId === traceId));
});

test('two workers share the work; a prompt never gets two different results', async () => {
  const t = await createTestEnv({ promptPartitions: 4 });
  const groupId = randomName('workers-');
  const engine = createFluxPipeline({ modelDirectory: t.config.model.dir });
  const a = await startTestWorker(t.config, { groupId, workerId: 'worker-a', engine });
  const b = await startTestWorker(t.config, {
    groupId,
    workerId: 'worker-b',
    engine: createFluxPipeline({ modelDirectory: t.config.model.dir }),
  });
  after(async () => {
    await a.stop();
    await b.stop();
  });
  const sent = await sendPrompts(
    t.kafka,
    codec,
    t.topics.prompts,
    'job-two',
    Array.from({ length: 24 }, (_, i) => ({ prompt: `prompt number ${i}` })),
  );
  const results = await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= sent.length, 120_000);
  assert.deepEqual(resultKeys(results), sentKeys(sent), 'a result for every prompt sent, and for nothing else');
  const workers = new Set(results.map((m) => m.value.worker));
  assert.deepEqual([...workers].sort(), ['worker-a', 'worker-b'], 'both workers took part');
  const byKey = new Map<string, ImageResult>();
  for (const { value } of results) {
    const previous = byKey.get(keyOf(value));
    if (previous) assert.equal(previous.uri, value.uri, 'a duplicate result must be identical in its outcome');
    byKey.set(keyOf(value), value);
  }
});

/** An engine that fails any pass containing the poison prompt (the test seam: the real engine for the rest). */
function poisoned(engine: ImageEngine, poison: string): ImageEngine {
  return withGenerate(engine, async (requests: readonly GenerateRequest[]) => {
    if (requests.some((r) => r.prompt.includes(poison))) throw new Error(`engine choked on ${poison}`);
    return engine.generate(requests);
  });
}

test('a poison prompt ends in the errors topic while its batch-mates succeed', async () => {
  const t = await createTestEnv({ promptPartitions: 1 });
  const engine = poisoned(createFluxPipeline({ modelDirectory: t.config.model.dir }), 'POISON');
  const { stop } = await startTestWorker(t.config, {
    groupId: randomName('workers-'),
    engine,
    env: { T2I_MAX_BATCH: '4', T2I_MAX_WAIT_MS: '500', T2I_MAX_ATTEMPTS: '2' },
  });
  after(stop);
  const sent = await sendPrompts(t.kafka, codec, t.topics.prompts, 'job-poison', [
    { prompt: 'fine one' },
    { prompt: 'POISON pill' },
    { prompt: 'fine two' },
    { prompt: 'fine three' },
  ]);
  const letters = await (
    await watchTopic(t.kafka, codec, t.topics.errors, 'DeadLetter')
  ).until('DeadLetter messages', (all) => all.length >= 1, 90_000);
  const results = await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= 3, 90_000);
  assert.equal(letters.length, 1);
  const letter = letters[0]?.value;
  assert.equal(letter?.row, 2);
  assert.equal(letter?.promptIndex, 0);
  assert.equal(letter?.stage, 'engine');
  assert.equal(letter?.attempts, 2);
  assert.match(letter?.error ?? '', /engine choked on POISON/);
  assert.equal(letter?.rowJson, sent[1]?.rowJson);
  assert.deepEqual([...new Set(results.map((m) => m.value.row))].sort(), [1, 3, 4]);
});

test('the next batch waits in the engine while the current one runs, and every prompt still gets its one result', async () => {
  const t = await createTestEnv({ promptPartitions: 1 });
  const real = createFluxPipeline({ modelDirectory: t.config.model.dir });
  let pending = 0;
  let mostPending = 0;
  const engine = withGenerate(real, async (requests: readonly GenerateRequest[]) => {
    mostPending = Math.max(mostPending, ++pending);
    try {
      return await real.generate(requests);
    } finally {
      pending--;
    }
  });
  const { stop } = await startTestWorker(t.config, { groupId: randomName('workers-'), engine, env: { T2I_MAX_BATCH: '2' } });
  after(stop);
  const sent = await sendPrompts(
    t.kafka,
    codec,
    t.topics.prompts,
    'job-queue',
    Array.from({ length: 16 }, (_, i) => ({ prompt: `prompt ${i}` })),
  );
  const results = await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= sent.length, 90_000);
  assert.deepEqual(resultKeys(results), sentKeys(sent));
  assert.ok(mostPending >= 2, `at most ${mostPending} pass(es) were given to the engine at once`);
});

/** A TCP relay in front of the real S3 server that the test can cut and restore (an S3 outage). */
async function startRelay(target: {
  host: string;
  port: number;
}): Promise<{ port: number; cut: () => void; restore: () => Promise<void>; close: () => void }> {
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve) => {
      server = net.createServer((client) => {
        const upstream = net.connect(target);
        sockets.add(client).add(upstream);
        client.pipe(upstream).pipe(client);
        const drop = () => {
          client.destroy();
          upstream.destroy();
        };
        client.on('error', drop).on('close', drop);
        upstream.on('error', drop).on('close', drop);
      });
      server.listen(port, '127.0.0.1', () => {
        port = (server?.address() as net.AddressInfo).port;
        resolve();
      });
    });
  await listen();
  const cut = () => {
    server?.close();
    for (const s of sockets) s.destroy();
    sockets.clear();
  };
  return { port, cut, restore: listen, close: cut };
}

test('S3 down for a while: the worker waits, retries and recovers with nothing lost or dead-lettered', async () => {
  const t = await createTestEnv({ promptPartitions: 2 });
  const s3 = new URL(t.config.s3.endpoint ?? 'http://127.0.0.1:9000');
  const relay = await startRelay({ host: s3.hostname, port: Number(s3.port) });
  after(relay.close);
  const config = loadConfig({ ...process.env, ...t.env, S3_ENDPOINT: `http://127.0.0.1:${relay.port}` });
  relay.cut();
  const groupId = randomName('workers-');
  const { stop, worker } = await startTestWorker(config, { groupId });
  after(stop);
  const sent = await sendPrompts(
    t.kafka,
    codec,
    t.topics.prompts,
    'job-outage',
    Array.from({ length: 6 }, (_, i) => ({ prompt: `outage prompt ${i}` })),
  );
  // Wait until the worker has hit the outage (retries counted), then bring S3 back.
  for (let i = 0; i < 200; i++) {
    const retries = (await worker.metrics.transientRetries.get()).values.reduce((sum, v) => sum + v.value, 0);
    if (retries >= 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(
    (await worker.metrics.transientRetries.get()).values.some((v) => v.value > 0),
    'the worker saw the outage',
  );
  await relay.restore();
  const results = await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= sent.length, 120_000);
  assert.deepEqual(resultKeys(results), sentKeys(sent), 'a result for every prompt sent, and for nothing else');
  for (const r of sent) assert.ok(await t.store.head(imageKey('job-outage', r.row, 0)), `image of row ${r.row} uploaded`);
  // Every prompt committed means its outcome was published: then the errors topic is complete, and empty.
  await waitForCommitted(t.kafka, groupId, t.topics.prompts);
  assert.equal(await topicSize(t.kafka, t.topics.errors), 0, 'nothing dead-lettered for a transient outage');
});

function startWorkerProcess(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), 'worker'], {
    env: { ...process.env, ...env, T2I_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
}

test('a worker SIGKILLed mid-job and restarted: every prompt ends with a result, duplicates identical', async () => {
  const t = await createTestEnv({ promptPartitions: 2 });
  const env = { ...t.env, T2I_WORKER_GROUP: randomName('workers-'), T2I_MAX_BATCH: '2', T2I_MAX_WAIT_MS: '20' };
  const sent = await sendPrompts(
    t.kafka,
    codec,
    t.topics.prompts,
    'job-kill',
    Array.from({ length: 30 }, (_, i) => ({ prompt: `kill test ${i}`, width: 128, height: 128 })),
  );
  const first = startWorkerProcess(env);
  let stderr = '';
  first.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // Kill it once some (not all) results are out.
  await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= 4, 120_000);
  first.kill('SIGKILL');
  await new Promise((resolve) => first.once('exit', resolve));
  const partial = await readTopic(t.kafka, codec, t.topics.results, 'ImageResult');
  assert.ok(distinct(partial) < sent.length, `killed before the end (${distinct(partial)} of ${sent.length} done); stderr: ${stderr}`);
  const second = startWorkerProcess({ ...env, T2I_WORKER_ID: 'after-restart' });
  after(() => {
    second.kill('SIGKILL');
  });
  await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('every prompt', (all) => distinct(all) >= sent.length, 180_000);
  // Once the group has committed every prompt, no more results can come: read them all, duplicates included.
  await waitForCommitted(t.kafka, env.T2I_WORKER_GROUP, t.topics.prompts);
  const results = await readTopic(t.kafka, codec, t.topics.results, 'ImageResult');
  assert.equal(distinct(results), sent.length, 'nothing missing');
  const byKey = new Map<string, ImageResult>();
  for (const { value } of results) {
    const previous = byKey.get(keyOf(value));
    if (previous) {
      assert.equal(previous.uri, value.uri);
      assert.equal(previous.seed, value.seed);
    }
    byKey.set(keyOf(value), value);
  }
  assert.ok(
    results.some((m) => m.value.worker === 'after-restart'),
    'the restarted worker finished the job',
  );
  // Graceful stop: SIGTERM drains and exits 0.
  second.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => second.once('exit', (c) => resolve(c)));
  assert.equal(code, 0);
});

test('an engine that is gone stops the worker without dead-lettering or committing: a healthy worker then does every prompt', async () => {
  const t = await createTestEnv({ promptPartitions: 2 });
  const groupId = randomName('workers-');
  const real = createFluxPipeline({ modelDirectory: t.config.model.dir });
  let calls = 0;
  const dying = withGenerate(real, async (requests: readonly GenerateRequest[]) => {
    calls++;
    throw new EngineError('NOT_LOADED', `engine thread exited (${requests.length} prompts lost with it)`);
  });
  const broken = await startTestWorker(t.config, { groupId, engine: dying, workerId: 'broken' });
  const sent = await sendPrompts(
    t.kafka,
    codec,
    t.topics.prompts,
    'job-fatal',
    Array.from({ length: 8 }, (_, i) => ({ prompt: `fatal test ${i}` })),
  );
  await assert.rejects(broken.worker.done, /engine thread exited/);
  assert.ok(calls >= 1);
  assert.equal(broken.worker.isReady(), false);
  await broken.stop();
  const healthy = await startTestWorker(t.config, { groupId, workerId: 'healthy' });
  after(healthy.stop);
  const results = await (
    await watchTopic(t.kafka, codec, t.topics.results, 'ImageResult')
  ).until('ImageResult messages', (all) => distinct(all) >= sent.length, 120_000);
  assert.deepEqual(resultKeys(results), sentKeys(sent), 'a result for every prompt sent, and for nothing else');
  assert.ok(results.every((m) => m.value.worker === 'healthy'));
  await waitForCommitted(t.kafka, groupId, t.topics.prompts);
  assert.equal(await topicSize(t.kafka, t.topics.errors), 0, 'nothing dead-lettered');
});
