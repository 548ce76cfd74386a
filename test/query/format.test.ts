/* eslint-disable no-control-regex -- these tests are about control characters */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { errorLines, jobHeader, jobLine, rowLines } from '../../services/query/format.ts';

test('job lines: running jobs show images so far (or unknown) and their last update', () => {
  assert.match(jobHeader(), /^JOB +STATUS +ROWS +IMAGES +ERRORS +MODEL +STARTED +FINISHED$/);
  const complete = jobLine({
    jobId: 'j1',
    status: 'complete',
    counts: { rows: 3, images: 4, errors: 0 },
    model: 'flux',
    started: '2025-01-02T03:04:05.678Z',
    finished: '2025-01-02T04:00:00.000Z',
  });
  assert.match(complete, /^j1 +complete +3 +4 +0 +flux +2025-01-02 03:04:05Z +2025-01-02 04:00:00Z$/);
  assert.match(
    jobLine({ jobId: 'j2', status: 'running', counts: { images: 1000 }, imagesCapped: true, updated: '2025-01-02T03:04:05Z' }),
    /^j2 +running +- +1000\+ +- +- +- +\(upd 2025-01-02 03:04:05Z\)$/,
  );
  assert.match(jobLine({ jobId: 'j3', status: 'running', counts: { images: null } }), /^j3 +running +- +unknown/);
});

test('row and error lines', () => {
  const lines = rowLines(
    {
      row: 4,
      offset: 0,
      prompts: ['a\nmulti-line   prompt'],
      images: [{ uri: 's3://b/k.png', row: 4, k: 0, meta: { seed: 9, width: 8, height: 8 } }],
      data: {},
    },
    0,
  );
  assert.deepEqual(lines, ['row 4', '  prompt 0: a multi-line prompt', '  image 0: s3://b/k.png  (8x8, seed 9)']);
  assert.deepEqual(rowLines({ row: null, offset: 0, prompts: ['p'], images: [], data: {} }, 6), [
    'row ? (output line 7, no images)',
    '  prompt 0: p',
  ]);
  assert.deepEqual(errorLines({ offset: 0, line: 9, stage: 'validate', error: 'no prompt', raw: '{}', data: {} }), [
    'line 9 [validate] no prompt',
    '  raw: {}',
  ]);
});

test('text from the bucket cannot drive the terminal: escape sequences and bidi overrides are shown, not obeyed', () => {
  const hostile = 'cat\u001b]0;pwned\u0007 \u001b[2J\u009b31m \u202eevil\u202c';
  const [, prompt] = rowLines({ row: 1, offset: 0, prompts: [hostile], images: [], data: {} }, 0);
  assert.doesNotMatch(prompt!, /[\u0000-\u001f\u007f-\u009f\u202a-\u202e]/);
  assert.match(prompt!, /\\u\{1b\}\]0;pwned\\u\{7\}/);
  assert.match(errorLines({ offset: 0, line: 2, error: 'bad \u001b[31mred', data: {} })[0]!, /bad \\u\{1b\}\[31mred/);
  assert.doesNotMatch(jobLine({ jobId: 'j', status: 'complete', counts: {}, model: 'm\u001b[8m' }), /\u001b/);
});
