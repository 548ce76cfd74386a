import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BATCH_MARGIN, messageBytes } from '../../services/common/topic-limits.ts';
import { packRecords } from '../../services/worker/publish.ts';

test('results are packed in order into sends under the limit; one that alone is over it is set apart', () => {
  const limit = BATCH_MARGIN + 100;
  const sizes = [30, 40, 50, 101, 20, 100, 1];
  const { groups, tooLarge } = packRecords(sizes, (n) => n, limit);
  assert.deepEqual(tooLarge, [101]);
  assert.deepEqual(groups, [[30, 40], [50, 20], [100], [1]]);
  for (const group of groups) assert.ok(group.reduce((a, b) => a + b, 0) <= limit - BATCH_MARGIN);
  assert.deepEqual(
    packRecords([], (n: number) => n, limit),
    { groups: [], tooLarge: [] },
  );
});

test('a record is counted with its key, value and headers', () => {
  const bare = messageBytes({ key: 'k', value: Buffer.alloc(100) });
  const withHeader = messageBytes({ key: 'k', value: Buffer.alloc(100), headers: { traceparent: 'x'.repeat(55) } });
  assert.ok(bare >= 101);
  assert.ok(withHeader >= bare + 'traceparent'.length + 55);
});
