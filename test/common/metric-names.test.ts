/**
 * Metric names and types as Prometheus reads them from /metrics: latencies are Histograms (aggregatable
 * across replicas, unlike Summaries), and the consumer lag has one name pattern and one label set in
 * every service.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import { createSinkMetrics } from '../../services/sink/sink-metrics.ts';
import { createWorkerMetrics } from '../../services/worker/worker-metrics.ts';

function types(text: string): Map<string, string> {
  return new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

test('worker and sink metrics: histograms for latencies, one lag naming, t2i_<service>_ prefixes', async () => {
  const registry = new Registry();
  const worker = createWorkerMetrics(registry);
  createSinkMetrics(registry, () => ({
    state: 'RUNNING',
    ready: true,
    jobsInFlight: 0,
    jobsCompleted: 0,
    bufferedMessages: 0,
    bufferedBytes: 0,
    partsWritten: 0,
    blockedPartitions: 0,
  }));
  worker.addedLatency.observe(0.2);
  worker.lag.set({ topic: 't2i.prompts', partition: '0' }, 3);
  const text = await registry.metrics();
  const byName = types(text);
  for (const [name, type] of byName) {
    assert.match(name, /^t2i_(worker|sink|undecodable)_/, `${name}: prefixed by its service`);
    if (name.endsWith('_seconds')) assert.equal(type, 'histogram', `${name}: a latency is a histogram`);
    if (name.endsWith('_total')) assert.equal(type, 'counter', `${name}: *_total is a counter`);
  }
  assert.equal(byName.get('t2i_worker_added_latency_seconds'), 'histogram');
  assert.equal(byName.get('t2i_worker_consumer_lag'), 'gauge');
  assert.equal(byName.get('t2i_sink_consumer_lag'), 'gauge');
  assert.match(text, /^t2i_worker_consumer_lag\{topic="t2i\.prompts",partition="0"\} 3$/m, 'worker lag labelled by topic and partition');
  assert.match(text, /^t2i_worker_added_latency_seconds_bucket\{le="0\.25"\} 1$/m);
  const workerLag = registry.getSingleMetric('t2i_worker_consumer_lag') as unknown as { labelNames: string[] };
  const sinkLag = registry.getSingleMetric('t2i_sink_consumer_lag') as unknown as { labelNames: string[] };
  assert.deepEqual(workerLag.labelNames, sinkLag.labelNames, 'the same labels in both services');
});
