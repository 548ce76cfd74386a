import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MicroBatcher, decideBatch } from '../../services/worker/micro-batcher.ts';

const policy = { maxBatch: 4, maxWaitMs: 50 };

test('decideBatch: full groups first, then due groups, else wait for the oldest', () => {
  assert.deepEqual(decideBatch([], 0, policy, false), { idle: true });
  assert.deepEqual(decideBatch([{ key: 'a', size: 2, oldestAt: 0 }], 10, policy, false), { waitMs: 40 });
  assert.deepEqual(decideBatch([{ key: 'a', size: 2, oldestAt: 0 }], 50, policy, false), { run: 'a' });
  assert.deepEqual(
    decideBatch(
      [
        { key: 'a', size: 2, oldestAt: 0 },
        { key: 'b', size: 4, oldestAt: 5 },
      ],
      10,
      policy,
      false,
    ),
    { run: 'b' },
  );
  assert.deepEqual(decideBatch([{ key: 'a', size: 1, oldestAt: 0 }], 1, policy, true), { run: 'a' });
});

test('MicroBatcher groups by shape, caps at maxBatch and releases partial batches after maxWaitMs', async () => {
  let now = 0;
  const batcher = new MicroBatcher<{ id: number; shape: string }>(
    policy,
    (x) => x.shape,
    () => now,
  );
  for (let i = 0; i < 6; i++) batcher.add({ id: i, shape: i % 2 === 0 ? '64x64' : '32x32' });
  batcher.add({ id: 6, shape: '64x64' });
  // 64x64 has 4 items (0,2,4,6): a full batch at once
  assert.deepEqual(
    (await batcher.next())?.map((x) => x.id),
    [0, 2, 4, 6],
  );
  // 32x32 has 3: waits until its oldest is 50 ms old
  const pending = batcher.next();
  now = 60;
  batcher.setMaxBatch(4); // wakes the waiter so it re-reads the clock
  assert.deepEqual(
    (await pending)?.map((x) => x.id),
    [1, 3, 5],
  );
  assert.equal(batcher.size, 0);
  batcher.close();
  assert.equal(await batcher.next(), undefined);
});

test('MicroBatcher: a lowered maxBatch applies to later batches; drain releases partial batches at once', async () => {
  const batcher = new MicroBatcher<number>({ maxBatch: 8, maxWaitMs: 60_000 }, () => 's');
  for (let i = 0; i < 5; i++) batcher.add(i);
  batcher.setMaxBatch(2);
  assert.deepEqual(await batcher.next(), [0, 1]);
  assert.deepEqual(await batcher.next(), [2, 3]);
  const last = batcher.next();
  batcher.drain();
  assert.deepEqual(await last, [4]);
});
