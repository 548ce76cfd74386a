/**
 * Scale-out while a job runs: a second worker process joins the group mid-job, then the first one is stopped with
 * SIGTERM mid-job (what KEDA does when it scales up and down). The job still completes with every input row exactly
 * once in output.jsonl. Real pieces throughout: the producer library, `t2i worker` child processes (the fixed-latency
 * benchmark engine, so no model runs), the sink, the local Kafka and S3.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { silentLogger } from '../../services/common/logger.ts';
import type { ImageResult } from '../../services/common/messages.ts';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import { createTestEnv, randomName, type TestEnv } from '../helpers/env.ts';
import { watchTopic } from '../helpers/topic-reader.ts';
import { startSink, withTimeout } from '../sink/sink-harness.ts';

const ROWS = 360;
/** Per batch of 4: slow enough that the job spans the join and the leave, fast enough for a short test. */
const ENGINE_LATENCY_MS = 250;

function startWorker(
  env: Record<string, string>,
  workerId: string,
): { child: ChildProcess; exited: Promise<number | null>; stderr: () => string } {
  const child = spawn(
    process.execPath,
    // The real worker service with a fixed-latency engine (bench/scale's), handed in through the ImageEngine seam.
    [
      '--import',
      'tsx',
      path.join(PACKAGE_ROOT, 'bench', 'scale', 'latency-worker.ts'),
      '--latency-ms',
      String(ENGINE_LATENCY_MS),
      '--max-batch',
      '4',
    ],
    {
      env: { ...process.env, ...env, T2I_WORKER_ID: workerId, T2I_LOG_LEVEL: 'warn', T2I_HTTP_PORT: '0' },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, exited, stderr: () => stderr };
}

/** Every result as it arrives (a live view), and a way to wait for a condition on them. */
async function watchResults(
  t: TestEnv,
): Promise<{ results: () => ImageResult[]; until: (what: string, done: (all: ImageResult[]) => boolean) => Promise<void> }> {
  const watch = await watchTopic(t.kafka, new AvroCodec(), t.topics.results, 'ImageResult');
  const results = () => watch.records.map((r) => r.value);
  const until = async (what: string, done: (all: ImageResult[]) => boolean) => {
    await watch.until(what, (records) => done(records.map((r) => r.value)));
  };
  return { results, until };
}

const distinctRows = (results: ImageResult[]) => new Set(results.map((r) => r.row)).size;

test('a worker added mid-job and one removed mid-job (SIGTERM): output.jsonl has every row exactly once', async () => {
  const t = await createTestEnv({ promptPartitions: 6 });
  const env = {
    ...t.env,
    T2I_WORKER_GROUP: randomName('workers-'),
    T2I_MAX_WAIT_MS: '20',
    T2I_SESSION_TIMEOUT_MS: '10000',
    T2I_GRACE_MS: '30000',
  };
  const { results, until } = await watchResults(t);
  const running = await startSink(t);

  const first = startWorker(env, 'first');
  const jobId = randomName('rebalance-');
  const input = Array.from({ length: ROWS }, (_, i) => `${JSON.stringify({ id: i + 1, prompt: `a lighthouse, variant ${i + 1}` })}\n`).join(
    '',
  );
  const summary = await produceJob({
    config: t.config,
    input: Readable.from([Buffer.from(input)]),
    jobId,
    defaults: { width: 32, height: 32, steps: 1 },
    kafka: t.kafka,
    logger: silentLogger(),
  });
  assert.equal(summary.rows, ROWS);

  // Join: a second worker once the first has made some progress.
  await until('the first results', (all) => distinctRows(all) >= 24);
  const second = startWorker(env, 'second');
  await until('results from the second worker', (all) => all.some((r) => r.worker === 'second'));

  // Leave: SIGTERM the first worker while the job is still running; it drains and exits cleanly.
  const doneWhenStopped = distinctRows(results());
  assert.ok(doneWhenStopped < ROWS, `the job was still running when the first worker was stopped (${doneWhenStopped}/${ROWS})`);
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0, `first worker drained and exited 0; stderr: ${first.stderr()}`);
  const stoppedAt = results().length;

  const manifest = await withTimeout(running.completion(jobId), 120_000, `job ${jobId} did not complete`);
  assert.equal(manifest.counts.rows, ROWS);
  assert.equal(manifest.counts.images, ROWS);
  assert.equal(manifest.counts.errors, 0);
  assert.ok(
    results()
      .slice(stoppedAt)
      .some((r) => r.worker === 'second'),
    'the second worker took over the first one’s partitions',
  );
  assert.ok(distinctRows(results().filter((r) => r.worker === 'first')) < ROWS, 'the first worker did not do the whole job');

  const output = (await t.store.get(`jobs/${jobId}/output.jsonl`))?.toString('utf8');
  assert.ok(output !== undefined, 'output.jsonl written');
  const lines = output.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, ROWS, 'one line per input row');
  const rows = lines.map((l) => JSON.parse(l) as { id: number; images: string[] });
  assert.deepEqual(
    rows.map((r) => r.id),
    Array.from({ length: ROWS }, (_, i) => i + 1),
    'every row exactly once, in input order',
  );
  for (const row of rows) {
    assert.equal(row.images.length, 1);
    assert.match(row.images[0] as string, new RegExp(`^s3://${t.store.bucket}/jobs/${jobId}/images/0*${row.id}-0\\.png$`));
  }

  second.child.kill('SIGTERM');
  assert.equal(await second.exited, 0, `second worker drained and exited 0; stderr: ${second.stderr()}`);
});
