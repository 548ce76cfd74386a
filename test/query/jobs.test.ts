import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTestEnv } from '../helpers/env.ts';
import { getJob, listJobs, listJobsPage } from '../../services/query/jobs.ts';

test('jobs: the sink manifest shape, a job with only sink working files, a broken manifest, odd prefixes, many pages', async () => {
  const { store } = await createTestEnv();
  // As services/sink writes it: timings.startedAt/finishedAt, model null with several models.
  await store.put(
    'jobs/01SINK/manifest.json',
    JSON.stringify({
      jobId: '01SINK',
      status: 'complete',
      counts: { rows: 2, inputRows: 3, prompts: 2, images: 2, errors: 1, badRows: 1, failedPrompts: 0, partialRows: 0 },
      parameters: { steps: 4 },
      model: null,
      models: ['flux-a', 'flux-b'],
      source: 's3://in/prompts.jsonl',
      timings: { startedAt: '2025-05-01T00:00:00.000Z', finishedAt: '2025-05-01T00:01:00.000Z', totalMs: 60000 },
    }),
  );
  await store.put('jobs/01SINK/output.jsonl', '{}\n');
  await store.put('jobs/02PARTS/_sink/parts/01ABC-n10.jsonl', '{}\n');
  await store.put('jobs/03BROKEN/manifest.json', '{"jobId": "03BROKEN", trunc');
  await store.put('jobs/bad name/manifest.json', '{}');
  await store.put('jobs/stray-file.txt', 'not a job');

  const sink = await getJob(store, '01SINK');
  assert.deepEqual(
    { ...sink, manifest: undefined },
    {
      jobId: '01SINK',
      status: 'complete',
      counts: { rows: 2, inputRows: 3, prompts: 2, images: 2, errors: 1, badRows: 1, failedPrompts: 0, partialRows: 0 },
      model: 'flux-a, flux-b',
      source: 's3://in/prompts.jsonl',
      started: '2025-05-01T00:00:00.000Z',
      finished: '2025-05-01T00:01:00.000Z',
      manifest: undefined,
    },
  );
  assert.deepEqual(await getJob(store, '02PARTS'), { jobId: '02PARTS', status: 'running', counts: { images: 0 } });
  assert.deepEqual(await getJob(store, '03BROKEN'), { jobId: '03BROKEN', status: 'complete', counts: {}, manifest: {} });
  assert.equal(await getJob(store, 'nope'), undefined);

  for (let i = 0; i < 23; i++)
    await store.put(`jobs/j${String(i).padStart(3, '0')}/manifest.json`, JSON.stringify({ status: 'complete', counts: { rows: i } }));
  const first = await listJobsPage(store, { limit: 10 });
  // A page holds at most `limit` prefixes; the invalid one ('bad name/') is among them and dropped.
  assert.equal(first.jobs.length, 9);
  assert.ok(first.nextCursor);
  const all: string[] = [];
  for await (const job of listJobs(store, 10)) all.push(job.jobId);
  assert.deepEqual(
    all,
    ['01SINK', '02PARTS', '03BROKEN', ...Array.from({ length: 23 }, (_, i) => `j${String(i).padStart(3, '0')}`)],
    'bad names skipped, each job once',
  );
});
