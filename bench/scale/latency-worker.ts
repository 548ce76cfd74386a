/**
 * A worker process whose engine is FixedLatencyEngine (a fixed delay per batch, grey images): the real
 * worker service through its ImageEngine seam, so bench/scale measures Kafka/S3 orchestration alone.
 *
 *   node --import tsx bench/scale/latency-worker.ts --latency-ms 200 [--max-batch 4]
 * (connection settings from the usual environment variables)
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../../services/common/config.ts';
import { workerOptionsFromEnv } from '../../services/worker/options.ts';
import { runWorkerService } from '../../services/worker/worker-service.ts';
import { FixedLatencyEngine } from './fixed-latency-engine.ts';

const { values } = parseArgs({ options: { 'latency-ms': { type: 'string' }, 'max-batch': { type: 'string', default: '4' } } });
const latencyMs = Number(values['latency-ms']);
if (!Number.isFinite(latencyMs) || latencyMs < 0) throw new Error('--latency-ms <ms> is required');
const config = loadConfig();
const options = workerOptionsFromEnv(process.env, { maxBatch: Number(values['max-batch']) });
await runWorkerService(config, options, (logger) => {
  logger.warn({ latencyMs }, 'benchmark worker: inference replaced by a fixed per-batch delay; images are flat grey');
  return new FixedLatencyEngine(latencyMs, undefined, Math.max(8, options.maxBatch ?? 8));
});
