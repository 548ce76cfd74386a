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
});

test('every field of a row reaches output.jsonl byte for byte, whatever the row holds (issue 15, item 5)', () => {
  const meta = '[{"seed":1,"width":64,"height":48,"steps":4,"guidance":3.5,"model":"m"}]';
  // A row that already has `images` / `image_meta`: kept under input_*, values untouched, one key each.
  const fields = '"big":12345678901234567890123,"f":1.50,"huge":1e400,"u":"\\u00e9\\n"';
  assert.equal(
    outputLine(`{"images":["old", 1.0],${fields},"image_meta":{"k": 2.50}}`, [image('u', 1)]),
    `{"input_images":["old", 1.0],${fields},"input_image_meta":{"k": 2.50},"images":["u"],"image_meta":${meta}}`,
  );
  // Line breaks between tokens (a lone CR) become spaces; nothing inside strings changes.
  assert.equal(outputLine('{"a":1.50,\r"b":"x\\ry"}', [image('u', 1)]), `{"a":1.50, "b":"x\\ry","images":["u"],"image_meta":${meta}}`);
  // A row nested 5000 deep: no recursion, no re-serialisation.
  const deep = `{"d":${'['.repeat(5000)}1.0${']'.repeat(5000)}}`;
  const line = outputLine(deep, [image('u', 1)]);
  assert.ok(line.startsWith(deep.slice(0, -1)));
  assert.equal(line.length, deep.length + `,"images":["u"],"image_meta":${meta}`.length);
});

test('images and image_meta are indexed by prompt: null where a middle prompt failed (issue 15, item 10)', () => {
  const line = JSON.parse(outputLine('{"p":1}', [image('u0', 0), null, image('u2', 2)])) as { images: unknown[]; image_meta: unknown[] };
  assert.deepEqual(line.images, ['u0', null, 'u2']);
  assert.equal(line.image_meta[1], null);
  const truncated = JSON.parse(outputLine('{}', [{ ...image('u', 1), truncation: '{"clip":{"tokens":90,"limit":77}}' }])) as {
    image_meta: { truncated?: unknown }[];
  };
  assert.deepEqual(truncated.image_meta[0]?.truncated, { clip: { tokens: 90, limit: 77 } });
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
  assert.deepEqual(rows[2]?.images, ['s3://images/jobs/j/images/000000004-0.png', null]);
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
