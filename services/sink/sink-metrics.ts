import { Counter, Gauge, type Registry } from 'prom-client';
import type { SinkStats } from './types.ts';

/** The sink's Prometheus metrics (names prefixed t2i_sink_). */
export function createSinkMetrics(registry: Registry, stats: () => SinkStats) {
  const registers = [registry];
  return {
    messages: new Counter({
      name: 't2i_sink_messages_total',
      help: 'Results and dead letters read, by kind and outcome (buffered, ignored: job already complete, undecodable, invalid)',
      labelNames: ['kind', 'outcome'],
      registers,
    }),
    partsWritten: new Counter({ name: 't2i_sink_parts_written_total', help: 'Sorted parts spilled to the bucket', registers }),
    rowsWritten: new Counter({ name: 't2i_sink_rows_written_total', help: 'Rows written to output.jsonl files', registers }),
    imagesWritten: new Counter({ name: 't2i_sink_images_written_total', help: 'Images listed in output.jsonl files', registers }),
    jobsFailed: new Counter({
      name: 't2i_sink_jobs_failed_total',
      help: 'Jobs this process failed (failed manifest written: producer failure, or results of an unannounced job)',
      registers,
    }),
    jobsCompleted: new Counter({
      name: 't2i_sink_jobs_completed_total',
      help: 'Jobs this process completed (manifest written)',
      registers,
    }),
    blocked: new Gauge({
      name: 't2i_sink_blocked_partitions',
      help: 'Partitions paused at a message this sink cannot decode (upgrade it; readiness is false meanwhile)',
      registers,
    }),
    lag: new Gauge({
      name: 't2i_sink_consumer_lag',
      help: 'Messages behind the high watermark, per partition, at the last batch',
      labelNames: ['topic', 'partition'],
      registers,
    }),
    buffered: new Gauge({
      name: 't2i_sink_buffered_messages',
      help: 'Results and dead letters held in memory, not spilled yet',
      registers,
      collect() {
        this.set(stats().bufferedMessages);
      },
    }),
    inFlight: new Gauge({
      name: 't2i_sink_jobs_in_flight',
      help: 'Jobs with data or events and no manifest yet',
      registers,
      collect() {
        this.set(stats().jobsInFlight);
      },
    }),
  };
}
