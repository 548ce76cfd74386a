/** Human-readable lines for `t2i query` (the --json forms print stored JSON as is). */
import type { ErrorView, JobSummary, RowView } from './types.ts';

const JOB_COLUMNS: [string, number][] = [
  ['JOB', 28],
  ['STATUS', 9],
  ['ROWS', 8],
  ['IMAGES', 8],
  ['ERRORS', 7],
  ['MODEL', 22],
  ['STARTED', 21],
  ['FINISHED', 21],
];

export function jobHeader(): string {
  return JOB_COLUMNS.map(([name, width]) => name.padEnd(width))
    .join(' ')
    .trimEnd();
}

export function jobLine(job: JobSummary): string {
  const images =
    job.counts.images === undefined || job.counts.images === null ? 'unknown' : `${job.counts.images}${job.imagesCapped ? '+' : ''}`;
  const cells = [
    job.jobId,
    job.status,
    count(job.counts.rows),
    images,
    count(job.counts.errors),
    printable(job.model ?? '-'),
    shortDate(job.started),
    job.status === 'running' ? (job.updated ? `(upd ${shortDate(job.updated)})` : '-') : shortDate(job.finished),
  ];
  return cells
    .map((cell, i) => cell.padEnd((JOB_COLUMNS[i] as [string, number])[1]))
    .join(' ')
    .trimEnd();
}

function count(value: number | undefined): string {
  return value === undefined ? '-' : String(value);
}

/** 2025-01-02T03:04:05.678Z → 2025-01-02 03:04:05Z */
function shortDate(iso: string | undefined): string {
  if (!iso) return '-';
  const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(iso);
  return match ? `${match[1]} ${match[2]}Z` : iso;
}

/** A row: its number, each prompt and each image URI with its size and seed. */
export function rowLines(row: RowView, index: number): string[] {
  const lines = [row.row !== null ? `row ${row.row}` : `row ? (output line ${index + 1}, no images)`];
  row.prompts.forEach((prompt, i) => lines.push(`  prompt ${i}: ${oneLine(prompt)}`));
  for (const image of row.images) {
    const meta = image.meta;
    const details = meta
      ? [
          meta.width && meta.height ? `${meta.width}x${meta.height}` : undefined,
          meta.seed !== undefined ? `seed ${meta.seed}` : undefined,
          meta.steps !== undefined ? `${meta.steps} steps` : undefined,
        ]
          .filter(Boolean)
          .join(', ')
      : '';
    lines.push(`  image ${image.k ?? '?'}: ${printable(image.uri)}${details ? `  (${details})` : ''}`);
  }
  return lines;
}

export function errorLines(error: ErrorView): string[] {
  const where = error.line ?? error.row;
  const head = `line ${where ?? '?'}${error.prompt_index !== undefined ? ` prompt ${error.prompt_index}` : ''} [${error.stage ?? 'error'}] ${oneLine(error.error ?? '')}`;
  const lines = [head];
  if (error.prompt !== undefined) lines.push(`  prompt: ${oneLine(error.prompt)}`);
  if (error.raw !== undefined) lines.push(`  raw: ${oneLine(error.raw, 200)}`);
  return lines;
}

function oneLine(text: string, max = 500): string {
  const flat = printable(text.replace(/\s+/g, ' ').trim());
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Text from the bucket made safe for a terminal: control characters (C0, DEL, C1: ESC sequences that
 * move the cursor, retitle the window or hide text) and bidirectional overrides are shown as \u{…}
 * escapes instead of being obeyed.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
