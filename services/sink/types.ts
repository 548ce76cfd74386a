import type { LifecycleState } from '../common/lifecycle.ts';

/** State of a sink: CREATED → STARTING → RUNNING → DRAINING → STOPPED (or FAILED). */
export type SinkState = LifecycleState;

/** manifest.json: the job summary, written last (its presence means the job is complete). */
/**
 * manifest.json of a job that cannot complete: its producer failed (`failed` event), or results came
 * for a job the jobs topic never announced. Its parts are deleted; images already uploaded stay under
 * jobs/<jobId>/images/ (no output.jsonl points at them). `t2i produce --force --job <id>` starts it again.
 */
export interface FailedJobManifest {
  jobId: string;
  status: 'failed';
  reason: string;
  /** Result and error lines the sink had received (duplicates included) when the job failed. */
  counts: { received: number; prompts: number | null; badRows: number | null };
  parameters: unknown;
  source: string | null;
  timings: { startedAt: string | null; producedAt: string | null; failedAt: string };
  output: { manifest: string };
}

export interface JobManifest {
  jobId: string;
  status: 'complete';
  counts: {
    /** Rows in output.jsonl (rows with at least one image). */
    rows: number;
    /** Lines of the input that held a row: valid rows + bad rows. */
    inputRows: number;
    /** Prompts of the valid rows. */
    prompts: number;
    images: number;
    /** Records in errors.jsonl (bad rows + failed prompts). */
    errors: number;
    badRows: number;
    failedPrompts: number;
    /** Rows in output.jsonl that also have failed prompts in errors.jsonl. */
    partialRows: number;
  };
  /** The job's parameters (paramsJson of its produced/started event), parsed. */
  parameters: unknown;
  /** The model when all images came from one, else null (see `models`). */
  model: string | null;
  models: string[];
  source: string | null;
  timings: {
    startedAt: string | null;
    producedAt: string | null;
    firstResultAt: string | null;
    lastResultAt: string | null;
    finishedAt: string;
    /** started → produced (ms). */
    produceMs: number | null;
    /** started → finished (ms). */
    totalMs: number | null;
    /** Engine time summed over the images (ms). */
    inferenceMsTotal: number;
    /** images / (totalMs / 1000). */
    imagesPerSecond: number | null;
  };
  output: { output: string; errors: string; manifest: string };
  sink: {
    /** Results and dead letters received for the job, duplicates included. */
    received: number;
    /** Distinct (row, prompt) keys: prompts + bad rows. */
    distinct: number;
    /** received − distinct: redeliveries, and dead letters of prompts that also have an image. */
    duplicatesDropped: number;
    /** Parts merged at completion (after compaction). */
    parts: number;
  };
}

/** A snapshot of what the sink holds, for logs, tests and /metrics. */
export interface SinkStats {
  state: SinkState;
  ready: boolean;
  /** Jobs with results or events and no manifest yet. */
  jobsInFlight: number;
  jobsCompleted: number;
  bufferedMessages: number;
  bufferedBytes: number;
  partsWritten: number;
  /** Partitions paused at a message this sink cannot decode. */
  blockedPartitions: number;
}
