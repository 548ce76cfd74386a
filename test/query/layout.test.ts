import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jobFileKey, jobIdOfPrefix, parseImageIndex, parseRowNumber, validateJobId } from '../../services/query/layout.ts';
import { QueryError } from '../../services/query/query-error.ts';
import { parseImageUri, thumbKey } from '../../services/common/bucket-layout.ts';

const refused = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof QueryError && e.status === 400);

test('job ids follow JOB_ID_PATTERN; "." and ".." are refused', () => {
  assert.equal(validateJobId('01JQ8Z-a_b.c'), '01JQ8Z-a_b.c');
  for (const bad of ['', '.', '..', 'a/b', '../x', 'a b', 'x'.repeat(65), 'é', 'a%2Fb']) refused(() => validateJobId(bad));
});

test('file keys stay inside the job prefix', () => {
  assert.equal(jobFileKey('j1', ['images', '000000001-0.png']), 'jobs/j1/images/000000001-0.png');
  assert.equal(jobFileKey('j1', ['output.jsonl']), 'jobs/j1/output.jsonl');
  for (const segments of [
    [],
    ['..', 'j2', 'manifest.json'],
    ['images', '..', '..', 'x'],
    ['.'],
    [''],
    ['a', ''],
    ['..\\x'],
    ['a/../../b'],
    ['/etc'],
    ['a\0b'],
    ['_sink', 'state.json'],
  ]) {
    refused(() => jobFileKey('j1', segments));
  }
  refused(() => jobFileKey('..', ['manifest.json']));
});

test('image URIs, row numbers, prefixes and thumbnail keys', () => {
  assert.deepEqual(parseImageUri('s3://b/jobs/j1/images/000000012-3.png'), {
    key: 'jobs/j1/images/000000012-3.png',
    jobId: 'j1',
    row: 12,
    k: 3,
  });
  assert.deepEqual(parseImageUri('https://cdn.example/base/jobs/j1/images/000000001-0.png?x=1'), {
    key: 'jobs/j1/images/000000001-0.png',
    jobId: 'j1',
    row: 1,
    k: 0,
  });
  assert.equal(parseImageUri('s3://b/jobs/j1/other/000000001-0.png'), undefined);
  assert.equal(parseRowNumber('7'), 7);
  for (const bad of ['0', '-1', '1.5', 'x', '1e3', '9999999999']) refused(() => parseRowNumber(bad));
  assert.equal(parseImageIndex('0'), 0);
  refused(() => parseImageIndex('-1'));
  assert.equal(jobIdOfPrefix('jobs/abc/'), 'abc');
  assert.equal(jobIdOfPrefix('jobs/a b/'), undefined);
  assert.equal(thumbKey('j1', 12, 0, 256), 'jobs/j1/thumbs/256/000000012-0.webp');
});
