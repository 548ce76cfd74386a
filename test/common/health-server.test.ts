import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Counter } from 'prom-client';
import { createMetricsRegistry, startHealthServer } from '../../services/common/health-server.ts';

test('livez, readyz and metrics', async () => {
  const registry = createMetricsRegistry('test');
  const counter = new Counter({ name: 't2i_test_total', help: 'test', registers: [registry] });
  counter.inc(3);
  let ready = false;
  const server = await startHealthServer({ port: 0, host: '127.0.0.1', registry, readiness: [{ name: 'model', check: () => ready }] });
  try {
    const base = `http://127.0.0.1:${server.port}`;
    assert.equal((await fetch(`${base}/livez`)).status, 200);
    const notReady = await fetch(`${base}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { status: 'not ready', checks: { model: false } });
    ready = true;
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /t2i_test_total\{service="test"\} 3/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    await server.close();
  }
});
