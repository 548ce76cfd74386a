import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import type { ObjectStore } from '../../services/common/object-store.ts';
import { createTestEnv, randomName, type TestEnv } from '../helpers/env.ts';
import { producerFor, readText, startSink, waitFor } from './sink-harness.ts';
import { buildJob, dataMessages, sendData, sendEvent, shuffled, variedRows } from './synthetic-job.ts';

const JOB_ID = 'job-restart';
const rows = variedRows(80);
const job = buildJob(JOB_ID, rows, { at: 1_700_000_000_000 });
const data = shuffled(dataMessages(job), 11);
const cut = Math.floor(data.length * 0.6);
// Redeliveries on both sides of the interruption.
const firstHalf = data.slice(0, cut);
const secondHalf = [...data.slice(cut), ...data.slice(cut - 10, cut + 5)];

async function countParts(store: ObjectStore): Promise<number> {
  let n = 0;
  for await (const o of store.list(`jobs/${JOB_ID}/_sink/parts/`)) if (o.key.endsWith('.jsonl')) n++;
  return n;
}

async function outputs(store: ObjectStore): Promise<{ output: string; errors: string }> {
  return {
    output: (await readText(store, `jobs/${JOB_ID}/output.jsonl`)) ?? '',
    errors: (await readText(store, `jobs/${JOB_ID}/errors.jsonl`)) ?? '',
  };
}

let reference: Promise<{ output: string; errors: string }> | undefined;

/** The same input, uninterrupted, in an env of its own. */
function uninterrupted(): Promise<{ output: string; errors: string }> {
  reference ??= (async () => {
    const env = await createTestEnv();
    const producer = await producerFor(env);
    const { completion, store } = await startSink(env);
    await sendEvent(producer, env.topics, job.started);
    await sendData(producer, env.topics, data, 50);
    await sendEvent(producer, env.topics, job.produced);
    await completion(JOB_ID);
    const result = await outputs(store);
    const withImages = rows.filter(
      (r) => !r.bad && (r.prompts ?? []).some((_, k) => !(r.failed ?? []).includes(k) || (r.both ?? []).includes(k)),
    ).length;
    assert.equal(result.output.split('\n').filter(Boolean).length, withImages);
    return result;
  })();
  return reference;
}

test('a sink closed abruptly mid-job (buffers dropped, nothing committed) and restarted writes the same bytes', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  const groupId = randomName('sink-');
  // Small buffers and no timed spills: parts are written every 10 messages, the rest stays in memory.
  const first = await startSink(env, { groupId, maxBufferedMessages: 10, flushIntervalMs: 600_000 });
  await sendEvent(producer, env.topics, job.started);
  await sendData(producer, env.topics, firstHalf, 7);
  await waitFor(
    async () => (first.sink.stats().partsWritten >= 3 && first.sink.stats().bufferedMessages > 0 ? true : undefined),
    20_000,
    'no parts spilled',
  );
  await first.sink.close({ flush: false });
  assert.ok((await countParts(env.store)) >= 3);
  assert.equal(await env.store.head(`jobs/${JOB_ID}/manifest.json`), undefined);

  await sendData(producer, env.topics, secondHalf, 7);
  await sendEvent(producer, env.topics, job.produced);
  const second = await startSink(env, { groupId, maxBufferedMessages: 10 });
  await second.completion(JOB_ID);
  const got = await outputs(env.store);
  const want = await uninterrupted();
  assert.equal(got.output, want.output);
  assert.equal(got.errors, want.errors);
});

function startChild(env: TestEnv, groupId: string): ChildProcess {
  const child = spawn(
    process.execPath,
    [
      path.join(PACKAGE_ROOT, 'bin/t2i.js'),
      'sink',
      '--group',
      groupId,
      '--flush-interval-ms',
      '200',
      '--max-buffered-messages',
      '10',
      '--session-timeout-ms',
      '6000',
    ],
    { cwd: PACKAGE_ROOT, env: { ...process.env, ...env.env, T2I_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
  });
  child.on('exit', (code, signal) => {
    if (code !== 0 && signal !== 'SIGKILL') process.stderr.write(`sink child exited ${code ?? signal}: ${stderr}\n`);
  });
  return child;
}

test('`t2i sink` killed with SIGKILL mid-job and started again writes the same bytes, then drains on SIGTERM', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  const groupId = randomName('sink-');
  const first = startChild(env, groupId);
  try {
    await sendEvent(producer, env.topics, job.started);
    await sendData(producer, env.topics, firstHalf, 7);
    await waitFor(async () => ((await countParts(env.store)) >= 3 ? true : undefined), 30_000, 'the child spilled no parts');
  } finally {
    first.kill('SIGKILL');
  }
  await once(first, 'exit');
  assert.equal(await env.store.head(`jobs/${JOB_ID}/manifest.json`), undefined);

  await sendData(producer, env.topics, secondHalf, 7);
  await sendEvent(producer, env.topics, job.produced);
  const second = startChild(env, groupId);
  try {
    await waitFor(
      async () => (await env.store.head(`jobs/${JOB_ID}/manifest.json`)) ?? undefined,
      40_000,
      'the restarted child did not complete the job',
    );
    const got = await outputs(env.store);
    const want = await uninterrupted();
    assert.equal(got.output, want.output);
    assert.equal(got.errors, want.errors);
  } finally {
    second.kill('SIGTERM');
  }
  const [code] = (await once(second, 'exit')) as [number | null];
  assert.equal(code, 0, 'graceful SIGTERM exits 0');
});
