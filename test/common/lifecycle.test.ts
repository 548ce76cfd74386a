import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
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

test('after SIGTERM and a finished drain the process exits 0 even if a library keeps a handle open', async () => {
  // A service whose drain finishes, while an interval (like kafkajs restarting a consumer) stays alive.
  const script = `
    import { handleSignals } from ${JSON.stringify(path.join(PACKAGE_ROOT, 'services/common/lifecycle.ts'))};
    import { silentLogger } from ${JSON.stringify(path.join(PACKAGE_ROOT, 'services/common/logger.ts'))};
    setInterval(() => {}, 1000);
    handleSignals(async () => {}, silentLogger(), 60_000);
    process.stdout.write('ready\\n');
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await once(child.stdout!, 'data');
  const started = Date.now();
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    once(child, 'exit') as Promise<[number | null]>,
    new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 20_000))),
  ]);
  clearTimeout(timer);
  if (outcome === 'hung') child.kill('SIGKILL');
  assert.notEqual(outcome, 'hung', 'still running 20 s after SIGTERM, its drain long done');
  assert.equal((outcome as [number | null])[0], 0);
  assert.ok(Date.now() - started < 20_000);
});
