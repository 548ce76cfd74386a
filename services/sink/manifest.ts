/**
 * manifest.json of a finished job: what a complete one says (counts, parameters, timings, outputs, the
 * sink's merge figures) and what a failed one says (the reason and how far it got); and the `completed`
 * event that goes with a complete manifest.
 */
import { errorsKey, manifestKey, outputKey } from '../common/bucket-layout.ts';
import { jobEvent, type JobEvent } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';
import type { JobFailure, JobState } from './job-book.ts';
import type { AssemblyStats } from './job-output.ts';
import type { FailedJobManifest, JobManifest } from './types.ts';

const iso = (t: number | null | undefined) => (t === null || t === undefined ? null : new Date(t).toISOString());

export function completeManifest(
  job: JobState,
  produced: JobEvent,
  stats: AssemblyStats,
  merge: { received: number; distinct: number; parts: number },
  store: ObjectStore,
): JobManifest {
  const finishedAt = Date.now();
  const startedAt = job.started?.at ?? null;
  const totalMs = startedAt === null ? null : finishedAt - startedAt;
  const paramsJson = produced.paramsJson ?? job.started?.paramsJson ?? null;
  return {
    jobId: job.jobId,
    status: 'complete',
    counts: {
      rows: stats.rows,
      inputRows: produced.rows + produced.badRows,
      prompts: produced.prompts,
      images: stats.images,
      errors: stats.errors,
      badRows: stats.badRows,
      failedPrompts: stats.failedPrompts,
      partialRows: stats.partialRows,
    },
    parameters: paramsJson === null ? null : parseOrText(paramsJson),
    model: stats.models.length === 1 ? (stats.models[0] as string) : null,
    models: stats.models,
    source: produced.source ?? job.started?.source ?? null,
    timings: {
      startedAt: iso(startedAt),
      producedAt: iso(produced.at),
      firstResultAt: iso(stats.firstResultAt),
      lastResultAt: iso(stats.lastResultAt),
      finishedAt: new Date(finishedAt).toISOString(),
      produceMs: startedAt === null ? null : produced.at - startedAt,
      totalMs,
      inferenceMsTotal: stats.inferenceMsTotal,
      imagesPerSecond: totalMs === null || totalMs <= 0 ? null : Math.round((stats.images / (totalMs / 1000)) * 1000) / 1000,
    },
    output: {
      output: store.uri(outputKey(job.jobId)),
      errors: store.uri(errorsKey(job.jobId)),
      manifest: store.uri(manifestKey(job.jobId)),
    },
    sink: { received: merge.received, distinct: merge.distinct, duplicatesDropped: merge.received - merge.distinct, parts: merge.parts },
  };
}

/** A failed job's manifest; `job` is what this process knows of it (nothing after a restart without events). */
export function failedManifest(
  jobId: string,
  failure: JobFailure,
  job: JobState | undefined,
  receivedInParts: number,
  store: ObjectStore,
): FailedJobManifest {
  const paramsJson = job?.produced?.paramsJson ?? job?.started?.paramsJson ?? null;
  return {
    jobId,
    status: 'failed',
    reason: failure.reason,
    counts: {
      received: receivedInParts + (job?.buffer.length ?? 0),
      prompts: job?.produced?.prompts ?? null,
      badRows: job?.produced?.badRows ?? null,
    },
    parameters: paramsJson === null ? null : parseOrText(paramsJson),
    source: job?.produced?.source ?? job?.started?.source ?? null,
    timings: { startedAt: iso(job?.started?.at), producedAt: iso(job?.produced?.at), failedAt: new Date().toISOString() },
    output: { manifest: store.uri(manifestKey(jobId)) },
  };
}

/** The `completed` JobEvent that goes with a manifest. */
export function completedEventFromManifest(manifest: JobManifest): JobEvent {
  return jobEvent(manifest.jobId, 'completed', {
    at: Date.parse(manifest.timings.finishedAt),
    rows: manifest.counts.rows,
    prompts: manifest.counts.prompts,
    badRows: manifest.counts.badRows,
    images: manifest.counts.images,
    errors: manifest.counts.errors,
    source: manifest.source,
    paramsJson:
      manifest.parameters === null
        ? null
        : typeof manifest.parameters === 'string'
          ? manifest.parameters
          : JSON.stringify(manifest.parameters),
    outputUri: manifest.output.output,
  });
}

function parseOrText(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
