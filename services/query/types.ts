/** What the query service answers with (CLI --json and the HTTP API share these shapes). */

export type JobStatus = 'running' | 'complete' | 'failed';

/** Counts of a job. From the manifest for a finished job; for a running one only `images` (so far) may be known. */
export interface JobCounts {
  rows?: number;
  inputRows?: number;
  prompts?: number;
  /** Images: the manifest's count, or images listed so far for a running job; null when unknown. */
  images?: number | null;
  errors?: number;
  badRows?: number;
  failedPrompts?: number;
  partialRows?: number;
}

export interface JobSummary {
  jobId: string;
  /** complete (manifest.json present), failed (manifest says so) or running (no manifest yet). */
  status: JobStatus;
  counts: JobCounts;
  /** True when `counts.images` of a running job stopped at the counting cap (there are more). */
  imagesCapped?: boolean;
  model?: string;
  source?: string;
  /** ISO 8601. */
  started?: string;
  finished?: string;
  /** Newest object seen for a running job (ISO 8601), a hint of progress. */
  updated?: string;
  /** The manifest as written by the sink (only on the single-job view). */
  manifest?: Record<string, unknown>;
  /** `t2i eval`'s prompt-following summary: share of judged images right, per attribute (0..1). */
  promptFollowing?: { judged: number; allRight: number; attributes: Record<string, number> };
}

/** One generated image of a row. */
export interface ImageRef {
  /** As written in output.jsonl (s3://bucket/key or https://…). */
  uri: string;
  /** Input row number (1-based line of the input file) and prompt index, from the deterministic key; null if the key does not follow it. */
  row: number | null;
  k: number | null;
  /** The aligned image_meta entry, when present. */
  meta?: ImageMeta;
}

export interface ImageMeta {
  seed?: number;
  width?: number;
  height?: number;
  steps?: number;
  guidance?: number;
  model?: string;
  [key: string]: unknown;
}

/** One line of output.jsonl. */
export interface RowView {
  /** Input row number, from the row's image keys; null for a row without images. */
  row: number | null;
  /** Byte offset of the line in output.jsonl (a cursor that starts at this row). */
  offset: number;
  prompts: string[];
  images: ImageRef[];
  /** The row object exactly as stored (input fields + images + image_meta); `{}` for a row nested too deep to re-serialise (see `text`). */
  data: Record<string, unknown>;
  /** Present instead of `data` for a row nested deeper than the API re-serialises: the stored line, verbatim. */
  text?: string;
}

/** One line of errors.jsonl. */
export interface ErrorView {
  offset: number;
  line?: number;
  row?: number;
  stage?: string;
  error?: string;
  prompt_index?: number;
  prompt?: string;
  raw?: string;
  data: Record<string, unknown>;
}

/** A page of a cursor-paginated listing; `nextCursor` is absent on the last page. */
export interface Page<T> {
  items: T[];
  nextCursor?: string;
}
