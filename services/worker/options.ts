import os from 'node:os';
import type { Env } from '../common/config.ts';
import { EnvReader } from '../common/env-reader.ts';

/** Worker tuning. Durations in milliseconds. */
export interface WorkerOptions {
  /** Consumer group (`T2I_WORKER_GROUP`). Default `t2i-workers`. */
  groupId: string;
  /** Id written into results (`T2I_WORKER_ID`). Default `<hostname>-<pid>`. */
  workerId: string;
  /** Most prompts per engine pass (`T2I_MAX_BATCH`). Default: the engine's preferred batch size. */
  maxBatch: number | undefined;
  /** Longest a prompt waits for batch-mates before a partial batch runs (`T2I_MAX_WAIT_MS`). Default 25 ms. */
  maxWaitMs: number;
  /** Batches past the batcher at once: in the engine (running or queued) or encoding/uploading (`T2I_PIPELINE_DEPTH`). Default 2. */
  pipelineDepth: number;
  /** Engine attempts for a prompt that fails on its own before it is dead-lettered (`T2I_MAX_ATTEMPTS`). Default 3. */
  maxAttempts: number;
  /** Bytes fetched per partition and request (`T2I_FETCH_MAX_BYTES_PER_PARTITION`). Default 256 KiB. */
  maxBytesPerPartition: number;
  /** Kafka session timeout (`T2I_SESSION_TIMEOUT_MS`). Default 30 000 ms; heartbeats run during long batches. */
  sessionTimeoutMs: number;
  /** PNG zlib level 0-9 (`T2I_PNG_COMPRESSION`). Default 6. */
  pngCompression: number;
  /** Grace period for SIGTERM (`T2I_GRACE_MS`). Default 120 000 ms. */
  graceMs: number;
}

/** The limits of the options a command line may also set (the CLI checks its flags against them). */
export const MAX_BATCH_RANGE = { min: 1, max: 256 } as const;
export const MAX_WAIT_MS_RANGE = { min: 0, max: 600_000 } as const;

/**
 * The worker's options from its environment, validated (every bad variable named at once). `flags` are
 * values a command line already parsed and checked (`t2i worker --max-batch`): they win over the environment.
 */
export function workerOptionsFromEnv(env: Env, flags: { maxBatch?: number; maxWaitMs?: number } = {}): WorkerOptions {
  const read = new EnvReader(env);
  const maxBatch = flags.maxBatch ?? (read.raw('T2I_MAX_BATCH') === undefined ? undefined : read.int('T2I_MAX_BATCH', 4, MAX_BATCH_RANGE));
  const options: WorkerOptions = {
    groupId: read.string('T2I_WORKER_GROUP', 't2i-workers'),
    workerId: read.string('T2I_WORKER_ID', `${os.hostname()}-${process.pid}`),
    maxBatch,
    maxWaitMs: flags.maxWaitMs ?? read.int('T2I_MAX_WAIT_MS', 25, MAX_WAIT_MS_RANGE),
    pipelineDepth: read.int('T2I_PIPELINE_DEPTH', 2, { min: 1, max: 64 }),
    maxAttempts: read.int('T2I_MAX_ATTEMPTS', 3, { min: 1, max: 20 }),
    maxBytesPerPartition: read.int('T2I_FETCH_MAX_BYTES_PER_PARTITION', 256 * 1024, { min: 1024, max: 64 * 1024 * 1024 }),
    sessionTimeoutMs: read.int('T2I_SESSION_TIMEOUT_MS', 30_000, { min: 6000, max: 3_600_000 }),
    pngCompression: read.int('T2I_PNG_COMPRESSION', 6, { min: 0, max: 9 }),
    graceMs: read.int('T2I_GRACE_MS', 120_000, { min: 1000 }),
  };
  read.assertValid('the worker');
  return options;
}
