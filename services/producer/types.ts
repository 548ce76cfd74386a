/** Where a job stands while its input is read. Counts are of what was read, not yet necessarily acknowledged. */
export interface ProduceProgress {
  jobId: string;
  /** Lines read (blank ones included). */
  lines: number;
  /** Valid rows read. */
  rows: number;
  /** Prompt requests made from them. */
  prompts: number;
  /** Rows rejected (each becomes one error record). */
  badRows: number;
  /** Input bytes read. */
  bytesRead: number;
  /** Input size in bytes, when known. */
  totalBytes: number | undefined;
  /** Messages acknowledged by the broker so far (requests and error records). */
  acknowledged: number;
  elapsedMs: number;
}

/** The outcome of a job whose every message was acknowledged: what `produced` announced. */
export interface ProduceSummary {
  jobId: string;
  /** The input's name: file path, `stdin`, `s3://…` or the given stream name. */
  source: string;
  /** Valid rows (each has at least one prompt request). */
  rows: number;
  /** Prompt requests sent to the prompts topic. */
  prompts: number;
  /** Rows sent to the errors topic. */
  badRows: number;
  /** Lines in the input, blank ones included. */
  lines: number;
  bytesRead: number;
  /** Produce requests it took (for tuning). */
  requests: number;
  elapsedMs: number;
  /** Topics written. */
  topics: { prompts: string; errors: string; jobs: string };
}
