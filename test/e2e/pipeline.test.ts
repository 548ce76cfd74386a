import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { Registry } from 'prom-client';
import { AvroCodec } from '../../services/common/avro.ts';
import { createKafka } from '../../services/common/kafka.ts';
import { silentLogger } from '../../services/common/logger.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { registerTelemetryBasics } from '../../services/common/telemetry.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import { createSink } from '../../services/sink/sink.ts';
import { readPngMetadata } from '../../services/worker/engine/index.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';
import { startTestWorker } from '../helpers/worker.ts';

registerTelemetryBasics();
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }));

const run = promisify(execFile);

/** An input with valid rows, a multi-prompt row, per-row overrides and bad rows of several kinds. */
const INPUT = [
  JSON.stringify({ id: 'a', conversations: [{ role: 'user', content: 'a red fox in snow' }] }),
  JSON.stringify({
    id: 'b',
    conversations: [
      { role: 'user', content: 'a lake' },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'the lake at night' },
    ],
  }),
  '{"id": "broken json", ',
  '',
  JSON.stringify({ id: 'c', prompt: 'a teapot', width: 32, height: 48, seed: 5 }),
  JSON.stringify({ id: 'd', note: 'no prompt here' }),
  JSON.stringify({ id: 'e', prompts: ['one bird', 'two birds', 'three birds'], steps: 2 }),
  JSON.stringify({ id: 'f', prompt: 'bad size', width: 30 }),
  JSON.stringify({ id: 'g', prompt: 'last row' }),
].join('\n');
const VALID = [
  { line: 1, id: 'a', images: 1 },
  { line: 2, id: 'b', images: 2 },
  { line: 5, id: 'c', images: 1 },
  { line: 7, id: 'e', images: 3 },
  { line: 9, id: 'g', images: 1 },
];
const BAD_LINES = [3, 6, 8];

function writeInput(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-e2e-'));
  const file = path.join(dir, 'prompts.jsonl');
  fs.writeFileSync(file, INPUT);
  return file;
}

async function checkJobOutput(t: Awaited<ReturnType<typeof createTestEnv>>, jobId: string, outputText?: string): Promise<void> {
  const output = outputText ?? (await t.store.get(`jobs/${jobId}/output.jsonl`))?.toString('utf8');
  assert.ok(output, 'output.jsonl exists');
  const rows = output
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { id: string; images: string[]; image_meta: { width: number; height: number; seed: number }[] });
  assert.deepEqual(
    rows.map((r) => r.id),
    VALID.map((v) => v.id),
    'every valid row exactly once, in input order',
  );
  for (const [i, row] of rows.entries()) {
    assert.equal(row.images.length, VALID[i]?.images, `row ${row.id} image count`);
    assert.equal(row.image_meta.length, row.images.length);
    for (const uri of row.images) {
      const key = uri.replace(`s3://${t.config.s3.bucket}/`, '');
      assert.ok(await t.store.head(key), `${uri} exists in the bucket`);
    }
  }
  const c = rows.find((r) => r.id === 'c');
  assert.deepEqual([c?.image_meta[0]?.width, c?.image_meta[0]?.height, c?.image_meta[0]?.seed], [32, 48, 5]);
  const errors = (await t.store.get(`jobs/${jobId}/errors.jsonl`))?.toString('utf8') ?? '';
  const records = errors
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { line: number; stage: string; error: string });
  assert.deepEqual(
    records.map((r) => r.line),
    BAD_LINES,
    'errors.jsonl lists every bad row with its line number',
  );
  assert.match(records.find((r) => r.line === 8)?.error ?? '', /width/);
  const manifest = JSON.parse((await t.store.get(`jobs/${jobId}/manifest.json`))?.toString('utf8') ?? '{}') as {
    counts: { rows: number; prompts: number; images: number; errors: number; badRows: number };
  };
  assert.deepEqual(
    {
      rows: manifest.counts.rows,
      prompts: manifest.counts.prompts,
      images: manifest.counts.images,
      errors: manifest.counts.errors,
      badRows: manifest.counts.badRows,
    },
    { rows: 5, prompts: 8, images: 8, errors: 3, badRows: 3 },
  );
}

test('producer → workers → sink: output.jsonl, errors.jsonl, manifest.json; one trace per prompt across all three', async () => {
  const t = await createTestEnv({ promptPartitions: 3 });
  const groupId = randomName('workers-');
  const w1 = await startTestWorker(t.config, { groupId, workerId: 'e2e-1' });
  const w2 = await startTestWorker(t.config, { groupId, workerId: 'e2e-2' });
  const logger = silentLogger();
  let completed: (jobId: string) => void = () => {};
  const done = new Promise<string>((resolve) => (completed = resolve));
  const sink = createSink({
    config: t.config,
    logger,
    kafka: createKafka(t.config.kafka, logger),
    store: t.store,
    codec: new AvroCodec(),
    registry: new Registry(),
    groupId: randomName('sink-'),
    flushIntervalMs: 500,
    onJobCompleted: (manifest) => completed(manifest.jobId),
  });
  await sink.start();
  after(async () => {
    await sink.close();
    await w1.stop();
    await w2.stop();
  });
  const summary = await produceJob({ config: t.config, input: writeInput(), jobId: 'e2e-job', logger });
  assert.deepEqual([summary.rows, summary.prompts, summary.badRows], [5, 8, 3]);
  assert.equal(await done, 'e2e-job');
  await checkJobOutput(t, 'e2e-job');

  // One trace per prompt: `send t2i.prompts` → `process t2i.prompts` → `process t2i.results` share a trace id,
  // each with OpenTelemetry's messaging attributes (semconv 1.28).
  const finished = spans.getFinishedSpans();
  const sendName = `send ${t.topics.prompts}`;
  const workerName = `process ${t.topics.prompts}`;
  const sinkName = `process ${t.topics.results}`;
  const workerPrompts = finished.filter((s) => s.name === workerName);
  for (const span of workerPrompts) {
    assert.equal(span.attributes['messaging.system'], 'kafka');
    assert.equal(span.attributes['messaging.operation.type'], 'process');
    assert.equal(span.attributes['messaging.destination.name'], t.topics.prompts);
    assert.equal(span.attributes['messaging.consumer.group.name'], groupId);
    assert.match(String(span.attributes['messaging.destination.partition.id']), /^[0-2]$/);
    assert.equal(typeof span.attributes['messaging.kafka.offset'], 'number');
    assert.equal(span.attributes['messaging.kafka.message.key'], `e2e-job/${span.attributes['t2i.row']}`);
    assert.equal(span.attributes['t2i.job_id'], 'e2e-job');
  }
  const sends = finished.filter((s) => s.name === sendName);
  assert.equal(sends.length, 8, 'one send span per prompt');
  assert.ok(sends.every((s) => s.attributes['messaging.operation.type'] === 'send' && s.attributes['t2i.job_id'] === 'e2e-job'));
  const sinkSpans = finished.filter((s) => s.name === sinkName);
  assert.ok(
    sinkSpans.every((s) => s.attributes['messaging.destination.name'] === t.topics.results && s.attributes['t2i.job_id'] === 'e2e-job'),
  );
  assert.ok(
    finished.every((s) => s.attributes['t2i.job'] === undefined),
    'one attribute name per concept: t2i.job_id',
  );
  assert.equal(new Set(workerPrompts.map((s) => `${s.attributes['t2i.row']}/${s.attributes['t2i.prompt_index']}`)).size, 8);
  const traceIds = new Set(workerPrompts.map((s) => s.spanContext().traceId));
  assert.equal(traceIds.size, 8, 'each prompt has its own trace');
  for (const traceId of traceIds) {
    const inTrace = finished.filter((s) => s.spanContext().traceId === traceId).map((s) => s.name);
    assert.ok(inTrace.includes(sendName), `trace ${traceId} has a producer span: ${inTrace.join(', ')}`);
    assert.ok(inTrace.includes(workerName) && inTrace.includes('worker.upload'), `trace ${traceId} has worker spans`);
    assert.ok(inTrace.includes(sinkName), `trace ${traceId} has the sink span: ${inTrace.join(', ')}`);
  }
  void context;

  // The query service over a job the real pipeline produced.
  const t2i = (...args: string[]) =>
    run(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), ...args], { env: { ...process.env, ...t.env } });
  const jobs = (await t2i('query', 'jobs', '--json')).stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { jobId: string; status: string });
  assert.deepEqual(
    jobs.map((j) => [j.jobId, j.status]),
    [['e2e-job', 'complete']],
  );
  const rows = (await t2i('query', 'rows', 'e2e-job', '--json')).stdout.trim().split('\n');
  assert.equal(rows.length, 5);
  const teapot = (await t2i('query', 'rows', 'e2e-job', '--grep', 'TEAPOT', '--json')).stdout.trim().split('\n');
  assert.deepEqual(
    teapot.map((l) => (JSON.parse(l) as { id: string }).id),
    ['c'],
  );
  const errorsOut = (await t2i('query', 'rows', 'e2e-job', '--errors', '--json')).stdout.trim().split('\n');
  assert.equal(errorsOut.length, 3);
  const png = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 't2i-q-')), 'bird.png');
  await t2i('query', 'image', 'e2e-job', '7', '2', '-o', png);
  const meta = readPngMetadata(fs.readFileSync(png));
  assert.equal(meta?.prompt, 'three birds');
  assert.equal(meta?.steps, 2);
  const url = (await t2i('query', 'image', 'e2e-job', '1', '--url')).stdout;
  assert.match(url, /^https?:\/\/127\.0\.0\.1:9000\/.*X-Amz-Signature=/m);
});

test('`t2i run FILE` on the real stack: exit 0, output.jsonl copied next to the input, URIs printed', async () => {
  const t = await createTestEnv({ promptPartitions: 2 });
  const input = writeInput();
  const { stdout } = await run(
    process.execPath,
    [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), 'run', input, '--job', 'run-cli', '--workers', '2', '--timeout', '240'],
    {
      env: { ...process.env, ...t.env, T2I_WORKER_GROUP: randomName('workers-'), T2I_SINK_GROUP: randomName('sink-') },
      timeout: 300_000,
    },
  );
  const outputFile = input.replace(/\.jsonl$/, '.output.jsonl');
  assert.match(stdout, /job run-cli: 5 rows, 8 images, 3 errors/);
  assert.match(stdout, new RegExp(`s3://${t.config.s3.bucket}/jobs/run-cli/output.jsonl`));
  assert.ok(fs.existsSync(outputFile));
  await checkJobOutput(t, 'run-cli', fs.readFileSync(outputFile, 'utf8'));
});
