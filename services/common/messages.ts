/** TypeScript views of the wire schemas in schemas/*.avsc (newest versions). Avro longs are JS numbers (safe up to 2^53). */

export interface PromptRequest {
  jobId: string;
  row: number;
  promptIndex: number;
  promptCount: number;
  prompt: string;
  seed: number;
  width: number | null;
  height: number | null;
  steps: number | null;
  guidance: number | null;
  rowJson: string;
  createdAt: number;
}

export interface ImageResult {
  jobId: string;
  row: number;
  promptIndex: number;
  promptCount: number;
  prompt: string;
  uri: string;
  key: string;
  seed: number;
  width: number;
  height: number;
  steps: number;
  guidance: number;
  model: string;
  rowJson: string;
  worker: string;
  inferenceMs: number;
  createdAt: number;
  /** JSON `{clip?: {tokens, limit}, t5?: {tokens, limit}}` when a tokenizer cut the prompt short; else null (v2). */
  truncation: string | null;
}

export type ErrorStage = 'parse' | 'validate' | 'engine' | 'encode' | 'upload';

export interface DeadLetter {
  jobId: string;
  row: number;
  promptIndex: number | null;
  promptCount: number | null;
  stage: ErrorStage | string;
  error: string;
  raw: string | null;
  prompt: string | null;
  rowJson: string | null;
  attempts: number;
  createdAt: number;
}

/** `unknown`: a symbol added by a newer writer (JobEvent v2's enum default); readers ignore such events. */
export type JobEventType = 'started' | 'produced' | 'completed' | 'failed' | 'unknown';

export interface JobEvent {
  jobId: string;
  type: JobEventType;
  at: number;
  rows: number;
  prompts: number;
  badRows: number;
  images: number;
  errors: number;
  source: string | null;
  paramsJson: string | null;
  outputUri: string | null;
  message: string | null;
}

/** A job event with every count zero and every optional field null, then `fields` over it. */
export function jobEvent(jobId: string, type: JobEvent['type'], fields: Partial<JobEvent>): JobEvent {
  return {
    jobId,
    type,
    at: Date.now(),
    rows: 0,
    prompts: 0,
    badRows: 0,
    images: 0,
    errors: 0,
    source: null,
    paramsJson: null,
    outputUri: null,
    message: null,
    ...fields,
  };
}

/** The dead letter of one prompt that will not become an image (the worker's engine or publish stage). */
export function promptDeadLetter(request: PromptRequest, stage: ErrorStage | string, error: string, attempts: number): DeadLetter {
  return {
    jobId: request.jobId,
    row: request.row,
    promptIndex: request.promptIndex,
    promptCount: request.promptCount,
    stage,
    error,
    raw: null,
    prompt: request.prompt,
    rowJson: request.rowJson,
    attempts,
    createdAt: Date.now(),
  };
}

/** Message key `<jobId>/<row>`: keeps a row's messages on one partition. */
export function rowKey(jobId: string, row: number): string {
  return `${jobId}/${row}`;
}

/**
 * A job id: 1-64 letters, digits, ".", "_" or "-", and not "." or ".." (it names a folder of the bucket).
 * The one check for every service: producer, run, sink, query.
 */
export const JOB_ID_PATTERN = /^(?!\.{1,2}$)[A-Za-z0-9._-]{1,64}$/;
export const JOB_ID_RULE = '1 to 64 letters, digits, ".", "_" or "-", and not "." or ".."';
