import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { T2iError } from '../../services/common/errors.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import { createTestEnv } from '../helpers/env.ts';
import { topicSize } from '../helpers/topic-reader.ts';

test('a job id already used in the bucket is refused before anything is produced; --force deletes the old outputs and starts clean (issue 15, item 6)', async () => {
  const t = await createTestEnv();
  // A completed job and an unfinished one (images only), as workers and the sink leave them.
  await t.store.put('jobs/done/manifest.json', '{"status":"complete"}');
  await t.store.put('jobs/done/images/000000001-0.png', 'png');
  await t.store.put('jobs/half/images/000000001-0.png', 'png');
  const input = () => Readable.from([Buffer.from('{"prompt":"a fox"}\n')]);
  for (const [jobId, what] of [
    ['done', 'a completed job'],
    ['half', 'an unfinished job'],
  ] as const) {
    await assert.rejects(
      produceJob({ config: t.config, input: input(), jobId, kafka: t.kafka }),
      (e: unknown) =>
        e instanceof T2iError &&
        e.code === 'INPUT_INVALID' &&
        new RegExp(`job id ${jobId} is already used .*holds ${what}.*--force`).test(e.message),
    );
  }
  assert.equal(await topicSize(t.kafka, t.topics.prompts), 0, 'nothing produced for a refused job');
  const summary = await produceJob({ config: t.config, input: input(), jobId: 'done', kafka: t.kafka, force: true });
  assert.equal(summary.prompts, 1);
  assert.equal(await t.store.head('jobs/done/manifest.json'), undefined, 'the old outputs are gone');
  assert.equal(await t.store.head('jobs/done/images/000000001-0.png'), undefined);
  assert.equal((await produceJob({ config: t.config, input: input(), jobId: 'fresh', kafka: t.kafka })).prompts, 1);
});
