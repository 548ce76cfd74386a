import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assembleJobOutput } from '../../services/sink/job-output.ts';
import { mergeSortedParts, sortAndDedupe } from '../../services/sink/merge.ts';
import { errorEntryLine, imageEntryLine } from '../../services/sink/part-format.ts';
import { createTestEnv } from '../helpers/env.ts';
import { producerFor, readText, startSink } from './sink-harness.ts';
import { buildJob, dataMessages, sendData, sendEvent, shuffled, variedRows, type JobMessages } from './synthetic-job.ts';

/** What the job's files must hold: the same assembly, over all messages sorted in memory (no parts, no Kafka). */
async function expectedFiles(job: JobMessages): Promise<{ output: string; errors: string }> {
  const lines = sortAndDedupe(dataMessages(job).map((m) => (m.kind === 'result' ? imageEntryLine(m.value) : errorEntryLine(m.value))));
  const output: string[] = [];
  const errors: string[] = [];
  await assembleJobOutput(
    mergeSortedParts([
      {
        name: 'all',
        lines: (async function* () {
          yield* lines;
        })(),
      },
    ]),
    { output: (l) => void output.push(l), error: (l) => void errors.push(l) },
  );
  const text = (list: string[]) => list.map((l) => `${l}\n`).join('');
  return { output: text(output), errors: text(errors) };
}

test('two jobs in flight complete independently; an empty job completes; many parts are compacted before the merge', async () => {
  const env = await createTestEnv();
  const producer = await producerFor(env);
  // Tiny spills and fan-in 3: job A ends up in many parts and needs compaction passes.
  const { sink, store, completion } = await startSink(env, { maxBufferedMessages: 6, mergeFanIn: 3 });

  const jobA = buildJob('job-a', variedRows(40, 1));
  const jobB = buildJob('job-b', variedRows(30, 2));
  const jobEmpty = buildJob('job-empty', []);
  const dataA = shuffled(dataMessages(jobA), 5);
  const dataB = shuffled(dataMessages(jobB), 6);
  const heldBack = dataB.slice(-3);

  // Produced events first this time; data of both jobs interleaved; three of B's messages held back.
  for (const job of [jobA, jobB, jobEmpty]) {
    await sendEvent(producer, env.topics, job.started);
    await sendEvent(producer, env.topics, job.produced);
  }
  const interleaved = dataA.flatMap((m, i) => [m, ...(dataB[i] && i < dataB.length - 3 ? [dataB[i]] : [])]);
  await sendData(producer, env.topics, interleaved, 5);

  const manifestA = await completion('job-a');
  const manifestEmpty = await completion('job-empty');
  assert.equal(await store.head('jobs/job-b/manifest.json'), undefined, 'job B is missing messages: not complete');
  assert.ok(sink.stats().jobsInFlight >= 1);

  await sendData(producer, env.topics, heldBack, 5);
  const manifestB = await completion('job-b');

  for (const [job, manifest] of [
    [jobA, manifestA],
    [jobB, manifestB],
  ] as const) {
    const want = await expectedFiles(job);
    assert.equal(await readText(store, `jobs/${job.produced.jobId}/output.jsonl`), want.output);
    assert.equal(await readText(store, `jobs/${job.produced.jobId}/errors.jsonl`), want.errors);
    assert.equal(manifest.counts.prompts, job.produced.prompts);
    assert.equal(manifest.counts.badRows, job.produced.badRows);
    assert.equal(manifest.counts.rows, want.output.split('\n').filter(Boolean).length);
  }
  assert.ok(manifestA.sink.parts <= 3, `merged from ${manifestA.sink.parts} parts after compaction`);
  assert.ok(
    store.written.filter((k) => k.startsWith('jobs/job-a/_sink/parts/')).length > 3,
    'job A was spilled in more parts than the fan-in',
  );

  assert.deepEqual(manifestEmpty.counts, {
    rows: 0,
    inputRows: 0,
    prompts: 0,
    images: 0,
    errors: 0,
    badRows: 0,
    failedPrompts: 0,
    partialRows: 0,
  });
  assert.equal(await readText(store, 'jobs/job-empty/output.jsonl'), '');
  assert.equal(await readText(store, 'jobs/job-empty/errors.jsonl'), '');
  assert.equal(sink.stats().jobsCompleted, 3);
});
