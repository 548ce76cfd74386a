/**
 * Everything one sink process knows about jobs: each open job's state and buffer, the jobs known complete,
 * the ones whose `completed` event is on the topic, and the ones to fail. Shared by ingest and spilling
 * (sink.ts), the job events reader (job-events.ts) and completion (completion.ts).
 */
import type { JobEvent } from '../common/messages.ts';

export interface JobState {
  jobId: string;
  started?: JobEvent;
  produced?: JobEvent;
  /** Part lines not spilled yet. */
  buffer: string[];
  bufferBytes: number;
  /** Lines in the job's parts as last seen (a LIST, plus this process's spills since). */
  partLines: number;
  /** Do not run the distinct count again before the parts hold this many lines (set by a count that fell short). */
  nextCheckAt: number;
  /** First contact: manifest check and part count from the bucket (once per process). */
  loaded?: Promise<void>;
  /** `loaded` has resolved: the hot path skips the await. */
  ready: boolean;
  /** The last completion attempt failed (S3 down…): the next tick tries again. */
  retryAttempt: boolean;
  /** When this process first heard of the job (an event or a result): the orphan clock. */
  firstSeenAt: number;
}

/** Why a job will not complete, and whether the sink must announce it (a `failed` event) or the producer did. */
export interface JobFailure {
  reason: string;
  announce: boolean;
}

export class JobBook {
  readonly jobs = new Map<string, JobState>();
  /** Jobs known complete (manifest seen or completed event read): their late messages are dropped. */
  readonly completed = new Set<string>();
  /** Jobs whose `completed` event is on the jobs topic (to re-publish one that a crash lost). */
  readonly completedEvents = new Set<string>();
  /** Jobs to fail (instead of completing) on their next attempt. */
  readonly failures = new Map<string, JobFailure>();
  /** Results and dead letters buffered in memory, all jobs together (spilled at a limit or a tick). */
  bufferedMessages = 0;
  bufferedBytes = 0;

  /** The job's state, created on first mention. */
  state(jobId: string): JobState {
    let job = this.jobs.get(jobId);
    if (!job) {
      job = { jobId, buffer: [], bufferBytes: 0, partLines: 0, nextCheckAt: 0, retryAttempt: false, ready: false, firstSeenAt: Date.now() };
      this.jobs.set(jobId, job);
    }
    return job;
  }

  /** Lines the job must have in its parts before a distinct count is worth running. */
  checkThreshold(job: JobState): number {
    const expected = job.produced ? job.produced.prompts + job.produced.badRows : Number.POSITIVE_INFINITY;
    return Math.max(expected, job.nextCheckAt);
  }

  /** Forgets a complete job: its buffer is dropped, its late messages will be ignored. */
  markCompleted(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (job) {
      this.bufferedMessages -= job.buffer.length;
      this.bufferedBytes -= job.bufferBytes;
      this.jobs.delete(jobId);
    }
    this.completed.add(jobId);
  }
}
