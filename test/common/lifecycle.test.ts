import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Lifecycle } from '../../services/common/lifecycle.ts';

test('close is idempotent, drains first and runs every cleanup step even when one fails', async () => {
  const lifecycle = new Lifecycle();
  const order: string[] = [];
  lifecycle.transition('STARTING');
  lifecycle.transition('RUNNING');
  lifecycle.onClose('first opened', () => {
    order.push('first');
  });
  lifecycle.onClose('second opened', () => {
    order.push('second');
    throw new Error('boom');
  });
  const a = lifecycle.close(async () => {
    assert.equal(lifecycle.getState(), 'DRAINING');
    order.push('drain');
  });
  const b = lifecycle.close();
  assert.equal(a, b);
  await a;
  assert.deepEqual(order, ['drain', 'second', 'first']);
  assert.equal(lifecycle.getState(), 'STOPPED');
});

test('invalid transitions are refused', () => {
  const lifecycle = new Lifecycle();
  assert.throws(() => lifecycle.transition('RUNNING'), /CREATED -> RUNNING/);
});
