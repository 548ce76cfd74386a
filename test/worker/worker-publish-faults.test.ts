import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { AvroCodec } from '../../services/common/avro.ts';
import { MessageProducer } from '../../services/common/message-producer.ts';
import type { PromptRequest } from '../../services/common/messages.ts';
import { createTestEnv, randomName, setMaxMessageBytes } from '../helpers/env.ts';
import { readTopic, topicSize } from '../helpers/topic-reader.ts';
import { startTestWorker } from '../helpers/worker.ts';

const request = (jobId: string, row: number, rowJson: string): PromptRequest => ({
  jobId,
  row,
  promptIndex: 0,
  promptCount: 1,
  prompt: `a red circle ${row}`,
  seed: row,
  width: null,
  height: null,
  steps: null,
  guidance: null,
  rowJson,
  createdAt: Date.now(),
});

/** `promise`'s value, or `late` if it has not settled within `ms` (the timer never outlives the race). */
async function within<T>(promise: Promise<T>, ms: number, late: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<T>((resolve) => (timer = setTimeout(() => resolve(late), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('results are sized by the topic limit read at start: one over it is a dead letter, two that only fit apart are sent apart, nothing refused (issue 15, item 2)', async () => {
  const t = await createTestEnv({ promptPartitions: 1 });
  const limit = 16_384;
  await setMaxMessageBytes(t.kafka, t.topics.results, limit);
  const big = JSON.stringify({ prompt: 'x', note: 'y'.repeat(limit * 2) });
  // Each fits the limit alone, two together do not: the worker must send them apart.
  const medium = (n: number) => JSON.stringify({ prompt: 'm', note: String(n).repeat(Math.floor(limit * 0.55)) });
  const producer = new MessageProducer(t.kafka, new AvroCodec());
  await producer.connect();
  after(() => producer.disconnect());
  // Sent together so that one micro-batch (the first four) holds both medium results, a small and the big one.
  await producer.send(t.topics.prompts, 'PromptRequest', [
    { key: 'job-big/3', value: request('job-big', 3, medium(3)) },
    { key: 'job-big/4', value: request('job-big', 4, medium(4)) },
    { key: 'job-big/0', value: request('job-big', 0, '{"prompt":"a"}') },
    { key: 'job-big/1', value: request('job-big', 1, big) },
    { key: 'job-big/2', value: request('job-big', 2, '{"prompt":"c"}') },
  ]);

  const { worker, stop } = await startTestWorker(t.config, { groupId: randomName('workers-') });
  after(stop);
  await waitFor(
    'every prompt published as a result or a dead letter',
    async () => (await topicSize(t.kafka, t.topics.results)) + (await topicSize(t.kafka, t.topics.errors)) >= 5,
  );
  const codec = new AvroCodec();
  const results = await readTopic(t.kafka, codec, t.topics.results, 'ImageResult');
  const letters = await readTopic(t.kafka, codec, t.topics.errors, 'DeadLetter');
  assert.deepEqual(results.map((r) => r.value.row).sort(), [0, 2, 3, 4]);
  assert.equal(letters.length, 1);
  assert.equal(letters[0]!.value.row, 1);
  assert.equal(letters[0]!.value.stage, 'publish');
  assert.match(letters[0]!.value.error, /max\.message\.bytes/);
  assert.equal(worker.isReady(), true, 'an oversized result is the row at fault, not the environment');
  // The worker read the topic's limit at start: it never sent the broker anything it had to refuse.
  const refused = (await worker.metrics.sendsRefused.get()).values.reduce((sum, v) => sum + v.value, 0);
  assert.equal(refused, 0, 'sends sized by max.message.bytes up front, none refused');
});

test('a non-retriable S3 error (the bucket is gone) stops the worker not-ready with done rejected, and close does not hang (issue 15, item 2)', async () => {
  const t = await createTestEnv({ promptPartitions: 1 });
  const producer = new MessageProducer(t.kafka, new AvroCodec());
  await producer.connect();
  after(() => producer.disconnect());
  await producer.send(t.topics.prompts, 'PromptRequest', [{ key: 'job-s3/0', value: request('job-s3', 0, '{"prompt":"a"}') }]);

  const missing = { ...t.config, s3: { ...t.config.s3, bucket: randomName('gone-') } };
  const { worker, stop } = await startTestWorker(missing, { groupId: randomName('workers-') });
  let closed = false;
  after(async () => {
    if (!closed) await stop();
  });
  const outcome = await within(
    worker.done.then(
      () => 'resolved',
      (error: unknown) => `rejected: ${(error as Error).message}`,
    ),
    120_000,
    'still running',
  );
  assert.match(outcome, /^rejected: S3 put/);
  assert.equal(worker.isReady(), false);
  const stopped = within(
    stop().then(() => 'closed'),
    30_000,
    'hung',
  );
  assert.equal(await stopped, 'closed', 'close must not wait for prompts that will never settle');
  closed = true;
  assert.equal(await topicSize(t.kafka, t.topics.results), 0);
  assert.equal(await topicSize(t.kafka, t.topics.errors), 0, 'an environment fault dead-letters nothing');
});
