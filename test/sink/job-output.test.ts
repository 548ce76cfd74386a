import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assembleJobOutput, errorLine, outputLine } from '../../services/sink/job-output.ts';
import { mergeSortedParts, sortAndDedupe } from '../../services/sink/merge.ts';
import { errorEntryLine, imageEntryLine, type ImagePayload } from '../../services/sink/part-format.ts';
import { buildJob, dataMessages } from './synthetic-job.ts';

const image = (uri: string, seed: number): ImagePayload => ({
  uri,
  seed,
  width: 64,
  height: 48,
  steps: 4,
  guidance: 3.5,
  model: 'm',
  rowJson: '',
  promptCount: 1,
  inferenceMs: 1,
  createdAt: 1,
});

test('output rows keep the original JSON text and get images and image_meta appended', () => {
  const rowJson = '{"id":7,"10":"x","conversations":[{"role":"user","content":"a cat"}],"n":1.50}';
  assert.equal(
    outputLine(rowJson, [image('s3://b/k0.png', 5), image('s3://b/k1.png', 6)]),
    '{"id":7,"10":"x","conversations":[{"role":"user","content":"a cat"}],"n":1.50,' +
      '"images":["s3://b/k0.png","s3://b/k1.png"],' +
      '"image_meta":[{"seed":5,"width":64,"height":48,"steps":4,"guidance":3.5,"model":"m"},{"seed":6,"width":64,"height":48,"steps":4,"guidance":3.5,"model":"m"}]}',
  );
  assert.equal(
    outputLine('{}', [image('u', 1)]),
    '{"images":["u"],"image_meta":[{"seed":1,"width":64,"height":48,"steps":4,"guidance":3.5,"model":"m"}]}',
  );
  // A row that already has `images` is re-serialised so the key is not duplicated.
  const replaced = JSON.parse(outputLine('{"images":["old"],"a":1}', [image('u', 1)])) as Record<string, unknown>;
  assert.deepEqual(Object.keys(replaced), ['a', 'images', 'image_meta']);
  assert.deepEqual(replaced.images, ['u']);
});

test('error records: bad rows carry raw, prompt failures carry prompt_index and prompt', () => {
  assert.equal(
    errorLine(3, -1, { stage: 'parse', error: 'invalid JSON', raw: '{"p', prompt: null, rowJson: null, promptCount: null, attempts: 0 }),
    '{"line":3,"row":null,"stage":"parse","error":"invalid JSON","raw":"{\\"p"}',
  );
  assert.equal(
    errorLine(4, 1, { stage: 'engine', error: 'NaN', raw: null, prompt: 'a "dog"', rowJson: '{"x":1}', promptCount: 2, attempts: 3 }),
    '{"line":4,"row":{"x":1},"prompt_index":1,"prompt":"a \\"dog\\"","stage":"engine","error":"NaN"}',
  );
});

test('assembly: input order, partial rows in both files, wholly failed rows only in errors, image beats dead letter', async () => {
  const job = buildJob('j', [
    { row: 1, prompts: ['a'] },
    { row: 2, prompts: ['b0', 'b1', 'b2'] },
    { row: 3, bad: { stage: 'parse', error: 'bad', raw: 'x', rowJson: null } },
    { row: 4, prompts: ['d0', 'd1'], failed: [1] },
    { row: 5, prompts: ['e0', 'e1'], failed: [0, 1] },
    { row: 6, prompts: ['f0'], both: [0] },
  ]);
  const lines = dataMessages(job).map((m) => (m.kind === 'result' ? imageEntryLine(m.value) : errorEntryLine(m.value)));
  const half = Math.floor(lines.length / 2);
  const parts = [sortAndDedupe(lines.slice(0, half).concat(lines.slice(0, 2))), sortAndDedupe(lines.slice(half))];
  const output: string[] = [];
  const errors: string[] = [];
  const stats = await assembleJobOutput(
    mergeSortedParts(
      parts.map((p, i) => ({
        name: String(i),
        lines: (async function* () {
          yield* p;
        })(),
      })),
    ),
    { output: (l) => void output.push(l), error: (l) => void errors.push(l) },
  );
  const rows = output.map((l) => JSON.parse(l) as { prompt: string; images: string[]; image_meta: { seed: number }[] });
  assert.deepEqual(
    rows.map((r) => r.prompt),
    ['a', 'b0', 'd0', 'f0'],
  );
  assert.deepEqual(rows[1]?.images, [
    's3://images/jobs/j/images/000000002-0.png',
    's3://images/jobs/j/images/000000002-1.png',
    's3://images/jobs/j/images/000000002-2.png',
  ]);
  assert.deepEqual(
    rows[1]?.image_meta.map((m) => m.seed),
    [2000, 2001, 2002],
  );
  assert.deepEqual(rows[2]?.images, ['s3://images/jobs/j/images/000000004-0.png']);
  const errs = errors.map((l) => JSON.parse(l) as { line: number; prompt_index?: number });
  assert.deepEqual(
    errs.map((e) => [e.line, e.prompt_index]),
    [
      [3, undefined],
      [4, 1],
      [5, 0],
      [5, 1],
    ],
  );
  assert.deepEqual(
    {
      rows: stats.rows,
      images: stats.images,
      errors: stats.errors,
      badRows: stats.badRows,
      failedPrompts: stats.failedPrompts,
      partialRows: stats.partialRows,
      models: stats.models,
    },
    { rows: 4, images: 6, errors: 4, badRows: 1, failedPrompts: 3, partialRows: 1, models: ['tiny-flux'] },
  );
});
