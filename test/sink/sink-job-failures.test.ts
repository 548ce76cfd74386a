/**
 * Jobs that cannot complete end, and the sink forgets them (issue: nothing lost, nothing hung, item 7):
 * a job its producer reports failed, results of a job nobody announced, a job whose events left the
 * jobs topic (retention) while it was open, and a job id started again after it finished.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { jobEvent } from '../../services/common/messages.ts';
import { topicOffsets } from '../../services/common/kafka.ts';
import { retry } from '../../services/common/retry.ts';
import { OPEN_JOBS_PREFIX, openJobKey, partsPrefix } from '../../services/common/bucket-layout.ts';
import { createTestEnv } from '../helpers/env.ts';
import { readTopic } from '../helpers/topic-reader.ts';
import { producerFor, readText, startSink, waitFor } from './sink-harness.ts';
import { buildJob, dataMessages, sendData, sendEvent, variedRows } from './synthetic-job.ts';
import type { ObjectStore } from '../../services/common/object-store.ts';

async function keysUnder(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of store.list(prefix)) keys.push(object.key);
  return keys;
}

test('a job its producer reports failed gets a failed manifest, its parts and ledger entry are deleted, and the sink forgets it', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  const { sink, store, failure } = await startSink(env);
  const job = buildJob('job-f', variedRows(20, 3));
  await sendEvent(producer, env.topics, job.started);
  await sendData(producer, env.topics, dataMessages(job).slice(0, 10));
  // Facts first: the data is spilled to parts and the job is in the ledger.
  await waitFor(async () => ((await keysUnder(store, partsPrefix('job-f'))).length > 0 ? true : undefined), 20_000, 'no parts spilled');
  await waitFor(async () => (await store.head(openJobKey('job-f'))) ?? undefined, 20_000, 'job not in the open-jobs ledger');

  await sendEvent(producer, env.topics, jobEvent('job-f', 'failed', { message: 'the broker refused a send', source: 'prompts.jsonl' }));
  const manifest = await failure('job-f');
  assert.equal(manifest.status, 'failed');
  assert.match(manifest.reason, /broker refused a send/);
  assert.equal(manifest.counts.received, 10);
  assert.equal(manifest.source, job.started.source);
  const written = JSON.parse((await readText(store, 'jobs/job-f/manifest.json'))!) as { status: string; reason: string };
  assert.deepEqual([written.status, written.reason], ['failed', manifest.reason]);
  assert.deepEqual(await keysUnder(store, 'jobs/job-f/_sink/'), [], 'parts deleted');
  assert.equal(await store.head(openJobKey('job-f')), undefined, 'ledger entry deleted');
  assert.equal(sink.stats().jobsInFlight, 0, 'the failed job is forgotten');
});

test('results of a job nobody announced fail it after orphanJobMs, with a failed event on the jobs topic', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  const { sink, store, failure } = await startSink(env, { orphanJobMs: 1500 });
  const job = buildJob('ghost', variedRows(6, 4));
  await sendData(producer, env.topics, dataMessages(job));
  const manifest = await failure('ghost');
  assert.match(manifest.reason, /no started or produced event/);
  assert.deepEqual(await keysUnder(store, 'jobs/ghost/_sink/'), []);
  const events = await readTopic(env.kafka, new AvroCodec(), env.topics.jobs, 'JobEvent');
  const failed = events.filter((e) => e.value.jobId === 'ghost' && e.value.type === 'failed');
  assert.equal(failed.length, 1, 'one failed event for t2i run and other watchers');
  assert.equal(failed[0]!.value.message, manifest.reason);
  assert.equal(sink.stats().jobsInFlight, 0);
});

test('a job whose events left the jobs topic while it was open completes after a restart, from the open-jobs ledger', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  const job = buildJob('job-old', variedRows(30, 5));
  const data = dataMessages(job);
  const group = `sink-${env.topics.jobs}`;
  const first = await startSink(env, { groupId: group });
  await sendEvent(producer, env.topics, job.started);
  await sendEvent(producer, env.topics, job.produced);
  await sendData(producer, env.topics, data.slice(0, 20));
  await waitFor(
    async () => ((await readText(first.store, openJobKey('job-old'))) ?? '').includes('"produced"') || undefined,
    20_000,
    'produced event not in the ledger',
  );
  await first.sink.close();

  // Retention: every record of the jobs topic is gone.
  const admin = env.kafka.admin();
  await admin.connect();
  try {
    // A broker under load may answer NOT_LEADER_FOR_PARTITION (retriable): retried.
    const offsets = await topicOffsets(admin, env.topics.jobs);
    await retry(
      () =>
        admin.deleteTopicRecords({
          topic: env.topics.jobs,
          partitions: offsets.map((o) => ({ partition: o.partition, offset: o.high })),
        }),
      { attempts: 8, initialMs: 250 },
    );
    const after = await topicOffsets(admin, env.topics.jobs);
    assert.ok(
      after.every((o) => o.low === o.high),
      'the jobs topic is empty',
    );
  } finally {
    await admin.disconnect();
  }

  const second = await startSink(env, { groupId: group });
  await sendData(producer, env.topics, data.slice(20));
  const manifest = await second.completion('job-old');
  assert.equal(manifest.counts.prompts, job.produced.prompts);
  assert.equal(manifest.timings.startedAt, new Date(job.started.at).toISOString(), 'the started event came back from the ledger');
  assert.equal(await second.store.head(openJobKey('job-old')), undefined, 'ledger entry deleted on completion');
  assert.deepEqual(await keysUnder(second.store, OPEN_JOBS_PREFIX), []);
});

test('a job id started again after it completed (produce --force) completes again with the new data after a sink restart', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  const group = `sink-${env.topics.jobs}`;
  const first = await startSink(env, { groupId: group });
  const before = buildJob('job-again', variedRows(8, 6));
  for (const event of [before.started, before.produced]) await sendEvent(producer, env.topics, event);
  await sendData(producer, env.topics, dataMessages(before));
  assert.equal((await first.completion('job-again')).counts.prompts, before.produced.prompts);
  await first.sink.close();

  // What `t2i produce --force` does: delete the job's objects, then produce it again.
  await first.store.deletePrefix('jobs/job-again/');
  const again = buildJob('job-again', variedRows(13, 7), { at: before.started.at + 1000 });
  assert.notEqual(again.produced.prompts, before.produced.prompts, 'the two runs differ, so the count tells them apart');
  for (const event of [again.started, again.produced]) await sendEvent(producer, env.topics, event);
  await sendData(producer, env.topics, dataMessages(again));
  // The restarted sink replays started, produced, completed of the first run, then the second run's events.
  const second = await startSink(env, { groupId: group });
  const manifest = await second.completion('job-again');
  assert.equal(manifest.counts.prompts, again.produced.prompts);
  assert.equal(manifest.timings.startedAt, new Date(again.started.at).toISOString());
});
