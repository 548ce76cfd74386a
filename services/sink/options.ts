import type { Kafka } from 'kafkajs';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AvroCodec } from '../common/avro.ts';
import type { Config } from '../common/config.ts';
import { T2iError } from '../common/errors.ts';
import type { MessageProducer } from '../common/message-producer.ts';
import type { ObjectStore } from '../common/object-store.ts';
import type { FailedJobManifest, JobManifest } from './types.ts';

/** What createSink needs (dependencies) and how it behaves (tuning, all optional). */
export interface SinkOptions {
  config: Config;
  logger: Logger;
  kafka: Kafka;
  store: ObjectStore;
  codec: AvroCodec;
  /** Metrics go here (the service runtime's registry). Default: a private registry. */
  registry?: Registry;
  /** Publishes the `completed` events. Default: one made from `kafka` and `codec`, owned by the sink. */
  producer?: MessageProducer;
  /** Called once per job this sink completes, after manifest.json is written and the event is published. */
  onJobCompleted?: (manifest: JobManifest) => void;
  /** Called once per job this sink fails (see FailedJobManifest), after its manifest.json is written. */
  onJobFailed?: (manifest: FailedJobManifest) => void;
  /** Consumer group of the results/errors consumer. Default `t2i-sink`. */
  groupId?: string;
  /** Spill the in-memory buffers to the bucket at least this often (ms), so offsets get committed. Default 5000. */
  flushIntervalMs?: number;
  /** Spill when this many results/errors are buffered (all jobs together). Default 20 000 (see bench/sink for the memory it costs). */
  maxBufferedMessages?: number;
  /** Spill when the buffered lines reach this many bytes (all jobs together). Default 8 MiB. */
  maxBufferedBytes?: number;
  /** Most parts merged at once; a job with more is compacted in passes first. Default 24 (each open part holds an S3 connection). */
  mergeFanIn?: number;
  /** Parallel part uploads in a spill. Default 4. */
  uploadConcurrency?: number;
  /** Delete `jobs/<id>/_sink/` once the job is complete. Default true. */
  deletePartsOnComplete?: boolean;
  /** Kafka session timeout (ms): how long a dead sink holds its partitions before the group moves on. Default 30 000. */
  sessionTimeoutMs?: number;
  /**
   * Results for a job with no `started` or `produced` event (on the jobs topic or in the open-jobs
   * ledger) for this long fail that job: a `failed` manifest, parts deleted, a `failed` event. Default
   * 600 000 (10 min; a job's `started` event is sent before its first prompt).
   */
  orphanJobMs?: number;
}

/** SinkOptions compiled once: defaults applied, values checked. */
export interface CompiledSinkOptions {
  groupId: string;
  flushIntervalMs: number;
  maxBufferedMessages: number;
  maxBufferedBytes: number;
  mergeFanIn: number;
  uploadConcurrency: number;
  deletePartsOnComplete: boolean;
  sessionTimeoutMs: number;
  orphanJobMs: number;
}

export function compileSinkOptions(options: Partial<SinkOptions>): CompiledSinkOptions {
  const compiled: CompiledSinkOptions = {
    groupId: options.groupId ?? 't2i-sink',
    flushIntervalMs: options.flushIntervalMs ?? 5000,
    maxBufferedMessages: options.maxBufferedMessages ?? 20_000,
    maxBufferedBytes: options.maxBufferedBytes ?? 8 * 1024 * 1024,
    mergeFanIn: options.mergeFanIn ?? 24,
    uploadConcurrency: options.uploadConcurrency ?? 4,
    deletePartsOnComplete: options.deletePartsOnComplete ?? true,
    sessionTimeoutMs: options.sessionTimeoutMs ?? 30_000,
    orphanJobMs: options.orphanJobMs ?? 600_000,
  };
  const problems: string[] = [];
  const positive = (name: keyof CompiledSinkOptions, min: number) => {
    const value = compiled[name];
    if (typeof value !== 'number' || !Number.isFinite(value) || !Number.isInteger(value) || value < min)
      problems.push(`${name}: expected an integer ≥ ${min}, got ${String(value)}`);
  };
  positive('flushIntervalMs', 10);
  positive('maxBufferedMessages', 1);
  positive('maxBufferedBytes', 1024);
  positive('mergeFanIn', 2);
  positive('uploadConcurrency', 1);
  positive('sessionTimeoutMs', 1000);
  positive('orphanJobMs', 100);
  if (!compiled.groupId) problems.push('groupId: expected a non-empty consumer group name');
  if (problems.length > 0) throw new T2iError('CONFIG_INVALID', `sink options: ${problems.join('; ')}`);
  return Object.freeze(compiled);
}
