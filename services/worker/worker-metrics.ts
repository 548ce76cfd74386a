import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The worker's Prometheus metrics (names prefixed t2i_worker_). */
export function createWorkerMetrics(registry: Registry) {
  const registers = [registry];
  return {
    images: new Counter({ name: 't2i_worker_images_total', help: 'images generated, uploaded and published', registers }),
    deadLetters: new Counter({ name: 't2i_worker_dead_letters_total', help: 'prompts given up and sent to the errors topic', registers }),
    sendsRefused: new Counter({
      name: 't2i_worker_sends_refused_total',
      help: "produce requests the broker refused as too large (split and sent again); sends are sized by the topics' max.message.bytes read at start, so this stays 0 unless a limit changed since",
      labelNames: ['topic'],
      registers,
    }),
    oversizedResults: new Counter({
      name: 't2i_worker_oversized_results_total',
      help: 'image results over the broker message size limit, dead-lettered instead (stage publish)',
      registers,
    }),
    engineFailures: new Counter({
      name: 't2i_worker_engine_failures_total',
      help: 'failed engine passes (before splitting/retrying)',
      registers,
    }),
    outOfMemory: new Counter({ name: 't2i_worker_out_of_memory_total', help: 'engine passes that ran out of memory', registers }),
    transientRetries: new Counter({
      name: 't2i_worker_transient_retries_total',
      help: 'S3/Kafka operations retried after a transient failure',
      labelNames: ['target'],
      registers,
    }),
    batchSize: new Histogram({
      name: 't2i_worker_batch_size',
      help: 'prompts per engine pass',
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers,
    }),
    maxBatch: new Gauge({ name: 't2i_worker_max_batch', help: 'current batch size limit (shrinks after out-of-memory)', registers }),
    inferenceSeconds: new Histogram({ name: 't2i_worker_inference_seconds', help: 'engine time per batch', buckets: SECONDS, registers }),
    encodeSeconds: new Histogram({ name: 't2i_worker_encode_seconds', help: 'PNG encoding time per image', buckets: SECONDS, registers }),
    uploadSeconds: new Histogram({ name: 't2i_worker_upload_seconds', help: 'S3 upload time per image', buckets: SECONDS, registers }),
    publishSeconds: new Histogram({
      name: 't2i_worker_publish_seconds',
      help: 'time to publish a batch of results (acks all)',
      buckets: SECONDS,
      registers,
    }),
    // A Histogram, not a Summary: quantiles over all replicas come from summing buckets (histogram_quantile).
    addedLatency: new Histogram({
      name: 't2i_worker_added_latency_seconds',
      help: 'per prompt: from fetched to result published, minus the engine time of its batch',
      buckets: SECONDS,
      registers,
    }),
    engineStarvedSeconds: new Counter({
      name: 't2i_worker_engine_starved_seconds_total',
      help: 'time the engine waited for prompts to batch',
      registers,
    }),
    engineBlockedSeconds: new Counter({
      name: 't2i_worker_engine_blocked_seconds_total',
      help: 'time the engine waited for encode/upload/publish slots (downstream backpressure)',
      registers,
    }),
    undecodable: new Counter({
      name: 't2i_undecodable_messages_total',
      help: 'messages that could not be decoded (e.g. a newer schema): their partition is paused, nothing after them is committed',
      labelNames: ['service', 'topic'],
      registers,
    }),
    blockedPartitions: new Gauge({
      name: 't2i_worker_blocked_partitions',
      help: 'partitions paused at a message this worker cannot decode (upgrade it; readiness is false meanwhile)',
      registers,
    }),
    inFlight: new Gauge({ name: 't2i_worker_in_flight', help: 'prompts taken from Kafka and not yet committed-ready', registers }),
    // Same name pattern and labels as the sink's t2i_sink_consumer_lag.
    lag: new Gauge({
      name: 't2i_worker_consumer_lag',
      help: 'Messages behind the high watermark, per partition, at the last batch',
      labelNames: ['topic', 'partition'],
      registers,
    }),
  };
}

export type WorkerMetrics = ReturnType<typeof createWorkerMetrics>;
