import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import { BATCH_MARGIN, partitionByteBudget, topicMaxMessageBytes } from '../../services/common/topic-limits.ts';
import { createTestEnv, randomName, setMaxMessageBytes } from '../helpers/env.ts';
import { readTopic } from '../helpers/topic-reader.ts';

const codec = new AvroCodec();

test('partitionByteBudget: the tuning, capped by the smallest topic limit less the batch margin', () => {
  assert.equal(partitionByteBudget(900_000, { a: 1_048_588, b: 2_000_000 }), 900_000);
  assert.equal(partitionByteBudget(900_000, { a: 50_000, b: 2_000_000 }), 50_000 - BATCH_MARGIN);
});

test('produceJob: rows are checked against the broker limit read at start; a too-large row or one of 250k prompts is an error record with its line, the job goes on', async () => {
  const env = await createTestEnv({ promptPartitions: 2 });
  // A prompts topic that accepts only 20 000-byte record batches (the broker default is ~1 MiB).
  const limit = 20_000;
  await setMaxMessageBytes(env.kafka, env.topics.prompts, limit);
  const admin = env.kafka.admin();
  await admin.connect();
  try {
    const read = await topicMaxMessageBytes(admin, [env.topics.prompts, env.topics.errors]);
    assert.equal(read[env.topics.prompts], limit, 'the topic limit is read back from the broker');
    assert.ok(read[env.topics.errors]! > limit);
  } finally {
    await admin.disconnect();
  }

  const pad = 'x'.repeat(8000);
  const manyPrompts = JSON.stringify({ prompts: Array.from({ length: 250_000 }, () => 'a') });
  assert.ok(manyPrompts.length > 999_000 && manyPrompts.length < 1024 * 1024, 'a ~1 MiB line');
  const input = [
    /* 1 */ JSON.stringify({ prompt: 'small' }),
    /* 2 */ JSON.stringify({ prompts: ['one', 'two', 'three'], pad }), // 3 x 8 KB: over the 20 000-byte batch
    /* 3 */ JSON.stringify({ prompt: 'one big', pad }), // 8 KB: fits
    /* 4 */ manyPrompts,
    /* 5 */ JSON.stringify({ prompts: ['p1', 'p2'] }),
  ].join('\n');

  const jobId = randomName('job-');
  const summary = await produceJob({ config: env.config, input: Readable.from([Buffer.from(input)]), jobId });
  assert.deepEqual([summary.rows, summary.prompts, summary.badRows], [3, 4, 2]);

  const requests = await readTopic(env.kafka, codec, env.topics.prompts, 'PromptRequest');
  assert.deepEqual(requests.map((r) => `${r.value.row}/${r.value.promptIndex}`).sort(), ['1/0', '3/0', '5/0', '5/1']);
  const errors = await readTopic(env.kafka, codec, env.topics.errors, 'DeadLetter');
  const byRow = new Map(errors.map((e) => [e.value.row, e.value]));
  assert.deepEqual([...byRow.keys()].sort(), [2, 4]);
  assert.match(byRow.get(2)!.error, new RegExp(`row too large: its 3 requests .* over the ${limit - BATCH_MARGIN}-byte limit`));
  assert.match(byRow.get(4)!.error, /250000 prompts, over the 1000 limit/);
  assert.ok((byRow.get(4)!.raw ?? '').length <= 4096, 'the error record keeps only the head of the line');

  // With the prompt cap raised, the 250k-prompt row is still refused by size, before its requests are encoded.
  const before = process.memoryUsage().rss;
  const second = await produceJob({
    config: env.config,
    input: Readable.from([Buffer.from(manyPrompts)]),
    jobId: randomName('job-'),
    maxPromptsPerRow: 300_000,
  });
  assert.deepEqual([second.rows, second.badRows], [0, 1]);
  const grown = (process.memoryUsage().rss - before) / 2 ** 20;
  assert.ok(grown < 200, `RSS grew ${grown.toFixed(0)} MiB`);
  const errors2 = await readTopic(env.kafka, codec, env.topics.errors, 'DeadLetter');
  assert.ok(errors2.some((e) => e.value.jobId === second.jobId && /row too large: its 250000 requests/.test(e.value.error)));
});

test('produceJob: an error record is cut to fit the errors topic limit; a broker refusal is reported as such, not as an outage', async () => {
  const env = await createTestEnv({ promptPartitions: 1 });
  const limit = 3000;
  await setMaxMessageBytes(env.kafka, env.topics.errors, limit);
  // Invalid JSON of 4 KiB: its error record would keep 4 KiB of it, over the errors topic's 3000 bytes.
  const bad = `{"prompt": "${'y'.repeat(4096)}`;
  const input = [JSON.stringify({ prompt: 'ok' }), bad].join('\n');
  const summary = await produceJob({ config: env.config, input: Readable.from([Buffer.from(input)]), jobId: randomName('job-') });
  assert.deepEqual([summary.rows, summary.badRows], [1, 1]);
  const errors = await readTopic(env.kafka, codec, env.topics.errors, 'DeadLetter');
  assert.equal(errors.length, 1);
  const raw = errors[0]!.value.raw ?? '';
  assert.ok(raw.length > 1000 && raw.length < limit, `raw kept ${raw.length} characters`);
  assert.ok(bad.startsWith(raw), 'the head of the line');

  // A send the broker refuses for good (here: a jobs topic that takes nothing over 100 bytes) is not an outage.
  await setMaxMessageBytes(env.kafka, env.topics.jobs, 100);
  await assert.rejects(
    produceJob({ config: env.config, input: Readable.from([Buffer.from(input)]), jobId: randomName('job-') }),
    (error: Error & { code?: string }) => {
      assert.equal(error.code, 'JOB_FAILED');
      assert.match(error.message, /the broker refused a send of job .*larger than the max message size/);
      return true;
    },
  );
});
