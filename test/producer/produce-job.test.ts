import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import type { KafkaMessage } from 'kafkajs';
import { AvroCodec, SCHEMA_HEADER } from '../../services/common/avro.ts';
import { headersToStrings } from '../../services/common/kafka.ts';
import type { DeadLetter, JobEvent, PromptRequest } from '../../services/common/messages.ts';
import { produceJob } from '../../services/producer/produce-job.ts';
import { deriveSeed } from '../../services/producer/seeds.ts';
import { createTestEnv, randomName } from '../helpers/env.ts';
import { readTopicMessages as readTopic } from '../helpers/topic-reader.ts';

const codec = new AvroCodec();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-produce-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function decodeAll<N extends 'PromptRequest' | 'DeadLetter' | 'JobEvent'>(name: N, messages: KafkaMessage[]) {
  return messages.map((m) => {
    const headers = headersToStrings(m.headers);
    assert.equal(headers[SCHEMA_HEADER], codec.fingerprint(name));
    return { key: m.key?.toString() ?? '', value: codec.decode(name, m.value, headers) };
  });
}

const longPrompt = 'p'.repeat(4001);
const hugeLine = `{"prompt": "huge", "pad": "${'x'.repeat(1100 * 1024)}"}`;
const lines: (string | Buffer)[] = [
  /* 1 */ '\ufeff{"id": 1, "conversations": [{"role": "user", "content": "a red fox"}]}',
  /* 2 */ '{"prompt": "crlf row", "seed": 123}\r',
  /* 3 */ '',
  /* 4 */ '{"id": 4, "conversations": [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}, {"content": "second"}], "seed": 1000, "width": 512, "steps": 4}',
  /* 5 */ '{"prompts": ["alpha", "beta"], "guidance": 7.5, "meta": {"keep": true}}',
  /* 6 */ '{"prompt": "broken',
  /* 7 */ '[1, 2]',
  /* 8 */ '{"id": 8}',
  /* 9 */ JSON.stringify({ prompt: longPrompt }),
  /* 10 */ Buffer.concat([Buffer.from('{"prompt": "bad '), Buffer.from([0xff, 0xfe]), Buffer.from(' bytes"}')]),
  /* 11 */ hugeLine,
  /* 12 */ '{"prompt": "odd size", "width": 500}',
  /* 13 */ '   \r',
  /* 14 */ '{"prompt": "last line without newline", "height": 768}',
];
const input = Buffer.concat(
  lines.map((l, i) => Buffer.concat([typeof l === 'string' ? Buffer.from(l) : l, Buffer.from(i < lines.length - 1 ? '\n' : '')])),
);

/** What the test checks of a request: everything but the job id, the row text and the send time. */
type ExpectedRequest = Omit<PromptRequest, 'jobId' | 'rowJson' | 'createdAt'>;

function expectedRequests(jobId: string): ExpectedRequest[] {
  const derived = (row: number, k: number) => deriveSeed(`job:${jobId}`, row, k);
  // Job defaults: steps 8, guidance 2 (a row's own values win).
  return [
    { row: 1, promptIndex: 0, promptCount: 1, prompt: 'a red fox', seed: derived(1, 0), width: null, height: null, steps: 8, guidance: 2 },
    { row: 2, promptIndex: 0, promptCount: 1, prompt: 'crlf row', seed: 123, width: null, height: null, steps: 8, guidance: 2 },
    { row: 4, promptIndex: 0, promptCount: 2, prompt: 'first', seed: 1000, width: 512, height: null, steps: 4, guidance: 2 },
    { row: 4, promptIndex: 1, promptCount: 2, prompt: 'second', seed: 1001, width: 512, height: null, steps: 4, guidance: 2 },
    { row: 5, promptIndex: 0, promptCount: 2, prompt: 'alpha', seed: derived(5, 0), width: null, height: null, steps: 8, guidance: 7.5 },
    { row: 5, promptIndex: 1, promptCount: 2, prompt: 'beta', seed: derived(5, 1), width: null, height: null, steps: 8, guidance: 7.5 },
    {
      row: 14,
      promptIndex: 0,
      promptCount: 1,
      prompt: 'last line without newline',
      seed: derived(14, 0),
      width: null,
      height: 768,
      steps: 8,
      guidance: 2,
    },
  ];
}

const expectedErrors: { row: number; stage: string; error: RegExp }[] = [
  { row: 6, stage: 'parse', error: /^invalid JSON/ },
  { row: 7, stage: 'validate', error: /the line is an array, not a JSON object/ },
  { row: 8, stage: 'validate', error: /^no prompt/ },
  { row: 9, stage: 'validate', error: /the prompt is 4001 characters, over the 4000 limit/ },
  { row: 10, stage: 'parse', error: /not valid UTF-8 \(first bad byte at byte 17\)/ },
  { row: 11, stage: 'parse', error: new RegExp(`line is ${Buffer.byteLength(hugeLine)} bytes, over the 1048576-byte limit`) },
  { row: 12, stage: 'validate', error: /width must be an integer multiple of 16/ },
];

async function runOnce(jobId: string, source: 'file' | 's3' | 'stream') {
  const env = await createTestEnv({ promptPartitions: 4 });
  let jobInput: string | Readable;
  if (source === 'file') {
    jobInput = path.join(tmp, `${randomName()}.jsonl`);
    fs.writeFileSync(jobInput, input);
  } else if (source === 's3') {
    await env.store.put('inputs/prompts.jsonl', input, 'application/x-ndjson');
    jobInput = `s3://${env.store.bucket}/inputs/prompts.jsonl`;
  } else {
    // Tiny chunks: every line boundary case crosses a chunk boundary somewhere.
    jobInput = Readable.from(
      (function* () {
        for (let i = 0; i < input.length; i += 7) yield input.subarray(i, i + 7);
      })(),
    );
  }
  const progress: number[] = [];
  const summary = await produceJob({
    config: env.config,
    input: jobInput,
    jobId,
    defaults: { steps: 8, guidance: 2 },
    onProgress: (p) => progress.push(p.bytesRead),
  });
  const requests = decodeAll('PromptRequest', await readTopic(env.kafka, env.topics.prompts));
  const errors = decodeAll('DeadLetter', await readTopic(env.kafka, env.topics.errors));
  const events = decodeAll('JobEvent', await readTopic(env.kafka, env.topics.jobs));
  return { env, jobInput, summary, requests, errors, events, progress };
}

test('produceJob: requests, error records and job events on the real broker, reproducible across runs of the same job', async () => {
  const jobId = randomName('job-');
  const first = await runOnce(jobId, 'file');

  // The summary and the `produced` counts.
  assert.equal(first.summary.jobId, jobId);
  assert.deepEqual(
    {
      rows: first.summary.rows,
      prompts: first.summary.prompts,
      badRows: first.summary.badRows,
      lines: first.summary.lines,
      bytes: first.summary.bytesRead,
    },
    { rows: 5, prompts: 7, badRows: 7, lines: 14, bytes: input.length },
  );
  assert.equal(first.progress.at(-1), input.length);

  // Requests: exactly the expected ones, every field checked.
  const byPosition = (a: { row: number; promptIndex: number }, b: { row: number; promptIndex: number }) =>
    a.row - b.row || a.promptIndex - b.promptIndex;
  const requests = first.requests.sort((a, b) => byPosition(a.value, b.value));
  assert.equal(requests.length, 7);
  const rowTexts = new Map<number, string>();
  lines.forEach((l, i) => rowTexts.set(i + 1, (typeof l === 'string' ? l : l.toString()).replace(/^\ufeff/, '').replace(/\r$/, '')));
  const expected = expectedRequests(jobId);
  for (let i = 0; i < expected.length; i++) {
    const { key, value } = requests[i]!;
    const want = expected[i]!;
    assert.equal(key, `${jobId}/${want.row}`);
    const { createdAt, rowJson, jobId: gotJob, ...fields } = value as PromptRequest;
    assert.equal(gotJob, jobId);
    assert.deepEqual(fields, want);
    assert.equal(rowJson, rowTexts.get(want.row));
    assert.doesNotThrow(() => JSON.parse(rowJson));
    assert.ok(createdAt > Date.now() - 600_000 && createdAt <= Date.now());
  }
  // Derived seeds are 32-bit unsigned.
  for (const { value } of requests) assert.ok(value.seed >= 0 && Number.isSafeInteger(value.seed));

  // Error records: one per bad row, with the line number, stage, reason and raw text.
  const errors = first.errors.map((e) => e.value as DeadLetter).sort((a, b) => a.row - b.row);
  assert.deepEqual(
    errors.map((e) => e.row),
    expectedErrors.map((e) => e.row),
  );
  for (let i = 0; i < errors.length; i++) {
    const got = errors[i]!;
    const want = expectedErrors[i]!;
    assert.equal(got.jobId, jobId);
    assert.equal(got.stage, want.stage, `row ${got.row}`);
    assert.match(got.error, want.error, `row ${got.row}`);
    assert.equal(got.promptIndex, null);
    assert.equal(got.promptCount, null);
    assert.ok(got.raw !== null && Buffer.byteLength(got.raw) <= 4096, `row ${got.row}: raw kept and truncated`);
  }
  assert.equal(first.errors.find((e) => e.value.row === 6)?.key, `${jobId}/6`);
  assert.equal(errors.find((e) => e.row === 6)?.raw, '{"prompt": "broken');
  assert.ok(errors.find((e) => e.row === 10)?.raw?.includes('\ufffd'));
  assert.ok(errors.find((e) => e.row === 11)?.raw?.startsWith('{"prompt": "huge", "pad": "xxxx'));
  assert.equal(errors.find((e) => e.row === 9)?.raw, JSON.stringify({ prompt: longPrompt }));
  assert.equal(Buffer.byteLength(errors.find((e) => e.row === 11)!.raw!), 4096);

  // Job events: started, then produced with the exact counts.
  const events = first.events.map((e) => e.value as JobEvent);
  assert.deepEqual(
    events.map((e) => e.type),
    ['started', 'produced'],
  );
  assert.ok(first.events.every((e) => e.key === jobId));
  assert.equal(events[0]!.source, first.jobInput);
  assert.deepEqual(JSON.parse(events[0]!.paramsJson ?? '{}').defaults, { steps: 8, guidance: 2 });
  assert.deepEqual(
    { rows: events[1]!.rows, prompts: events[1]!.prompts, badRows: events[1]!.badRows },
    { rows: 5, prompts: 7, badRows: 7 },
  );

  // The same job again, from S3 this time: the same keys, seeds and partitions.
  const second = await runOnce(jobId, 's3');
  assert.equal(second.summary.rows, 5);
  const fingerprint = (run: typeof first) =>
    run.requests
      .map(({ key, value }) => `${key} ${value.promptIndex} ${value.seed} ${value.prompt}`)
      .sort()
      .join('\n');
  assert.equal(fingerprint(second), fingerprint(first));
  assert.equal((second.events[0]!.value as JobEvent).source, second.jobInput);
  assert.deepEqual(
    second.errors.map((e) => e.value.row).sort((a, b) => a - b),
    expectedErrors.map((e) => e.row),
  );
});

test('produceJob: a stream in tiny chunks gives the same rows; a custom prompt key; a missing file is a clear error', async () => {
  const jobId = randomName('job-');
  const run = await runOnce(jobId, 'stream');
  assert.deepEqual(
    { rows: run.summary.rows, prompts: run.summary.prompts, badRows: run.summary.badRows },
    { rows: 5, prompts: 7, badRows: 7 },
  );
  assert.equal(run.summary.source, 'stream');

  const env = await createTestEnv({ promptPartitions: 2 });
  const summary = await produceJob({
    config: env.config,
    input: Readable.from([
      Buffer.from(
        '{"messages": [{"role": "user", "content": "from messages"}], "conversations": [{"role": "user", "content": "not this"}]}\n',
      ),
    ]),
    jobId,
    promptKey: 'messages',
  });
  assert.equal(summary.prompts, 1);
  const [request] = decodeAll('PromptRequest', await readTopic(env.kafka, env.topics.prompts));
  assert.equal(request?.value.prompt, 'from messages');

  await assert.rejects(produceJob({ config: env.config, input: path.join(tmp, 'missing.jsonl'), jobId }), /missing\.jsonl: no such file/);
  await assert.rejects(produceJob({ config: env.config, input: `s3://${env.store.bucket}/nope.jsonl`, jobId }), /no such object/);
});
