import assert from 'node:assert/strict';
import { test } from 'node:test';
import { T2iError } from '../../services/common/errors.ts';
import { backoffDelay, retry } from '../../services/common/retry.ts';

test('backoff grows exponentially, is capped, and jitter stays within the band', () => {
  const noJitter = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 };
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, noJitter)),
    [100, 200, 400, 800, 1000, 1000],
  );
  const half = { initialMs: 100, maxMs: 1000, jitter: 0.5 };
  assert.equal(
    backoffDelay(3, half, () => 0),
    200,
  );
  assert.equal(
    backoffDelay(3, half, () => 1),
    400,
  );
});

test('retry retries retriable errors and stops on others', async () => {
  let calls = 0;
  const value = await retry(
    async () => {
      calls++;
      if (calls < 3) throw new T2iError('S3_UNAVAILABLE', 'down', { retriable: true });
      return 'ok';
    },
    { initialMs: 1, maxMs: 2 },
  );
  assert.equal(value, 'ok');
  assert.equal(calls, 3);

  let bad = 0;
  await assert.rejects(
    retry(
      async () => {
        bad++;
        throw new T2iError('INPUT_INVALID', 'nope');
      },
      { initialMs: 1 },
    ),
    /nope/,
  );
  assert.equal(bad, 1);

  let limited = 0;
  await assert.rejects(
    retry(
      async () => {
        limited++;
        throw new T2iError('KAFKA_UNAVAILABLE', 'down', { retriable: true });
      },
      { initialMs: 1, maxMs: 1, attempts: 4 },
    ),
  );
  assert.equal(limited, 4);
});
