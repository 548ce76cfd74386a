/** Rows of a job: output.jsonl lines as RowView, errors.jsonl lines as ErrorView, prompt search. */
import type { ObjectStore } from '../common/object-store.ts';
import { errorsKey, outputKey, parseImageUri } from '../common/bucket-layout.ts';
import { readLinePage, readLines, type Line, type LinePage } from './json-lines.ts';
import type { ErrorView, ImageMeta, ImageRef, RowView } from './types.ts';

/**
 * The prompts of a row, as the producer reads them (design.md, Input): the user messages of
 * `conversations`, else `prompt`, else `prompts`. Lenient: whatever is not a non-empty string is skipped.
 */
export function promptsOf(row: Record<string, unknown>): string[] {
  const conversations = row.conversations;
  if (Array.isArray(conversations)) {
    const prompts = conversations
      .filter((m): m is Record<string, unknown> => typeof m === 'object' && m !== null)
      .filter((m) => m.role === undefined || m.role === null || m.role === 'user')
      .map((m) => m.content)
      .filter((c): c is string => typeof c === 'string' && c.trim() !== '');
    if (prompts.length > 0) return prompts;
  }
  if (typeof row.prompt === 'string' && row.prompt.trim() !== '') return [row.prompt];
  if (Array.isArray(row.prompts)) return row.prompts.filter((p): p is string => typeof p === 'string' && p.trim() !== '');
  return [];
}

const MAX_API_DEPTH = 256;

/** Deepest nesting of arrays/objects in a JSON text (strings skipped), without recursion. */
export function nestingDepth(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** A line of output.jsonl as a RowView; undefined for a line that is not a JSON object. */
export function rowView(line: Line): RowView | undefined {
  const data = parseObject(line.text);
  if (!data) return undefined;
  // images[k] / image_meta[k] belong to prompt k; null marks a prompt that failed (see errors.jsonl).
  const uris: unknown[] = Array.isArray(data.images) ? data.images : [];
  const metas = Array.isArray(data.image_meta) ? data.image_meta : [];
  const images: ImageRef[] = uris.flatMap((uri, i) => {
    if (typeof uri !== 'string') return [];
    const parsed = parseImageUri(uri);
    const meta = metas[i];
    return [
      {
        uri,
        row: parsed?.row ?? null,
        k: parsed?.k ?? null,
        ...(typeof meta === 'object' && meta !== null ? { meta: meta as ImageMeta } : {}),
      },
    ];
  });
  const row = images.find((image) => image.row !== null)?.row ?? null;
  // A row nested very deep (valid JSON, any depth is accepted upstream) cannot be re-serialised into an
  // API answer (JSON.stringify recurses): it is handed back as its stored text.
  if (nestingDepth(line.text) > MAX_API_DEPTH)
    return { row, offset: line.start, prompts: promptsOf(data), images, data: {}, text: line.text };
  return { row, offset: line.start, prompts: promptsOf(data), images, data };
}

/** A line of errors.jsonl as an ErrorView. */
export function errorView(line: Line): ErrorView | undefined {
  const data = parseObject(line.text);
  if (!data) return undefined;
  const pick = <T>(name: string, type: 'number' | 'string'): Record<string, T> =>
    typeof data[name] === type ? { [name]: data[name] as T } : {};
  return {
    offset: line.start,
    ...pick<number>('line', 'number'),
    ...pick<number>('row', 'number'),
    ...pick<string>('stage', 'string'),
    ...pick<string>('error', 'string'),
    ...pick<number>('prompt_index', 'number'),
    ...pick<string>('prompt', 'string'),
    ...pick<string>('raw', 'string'),
    data,
  };
}

function parseObject(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Case-insensitive substring match over a row's prompts; an empty needle matches everything. */
export function rowMatches(row: RowView, needle: string | undefined): boolean {
  if (!needle) return true;
  const lower = needle.toLowerCase();
  return row.prompts.some((p) => p.toLowerCase().includes(lower));
}

/** Case-insensitive match of an error record: its prompt, error message and raw text. */
export function errorMatches(error: ErrorView, needle: string | undefined): boolean {
  if (!needle) return true;
  const lower = needle.toLowerCase();
  return [error.prompt, error.error, error.raw].some((s) => s?.toLowerCase().includes(lower));
}

export interface RowQuery {
  /** Byte offset to start at (a nextCursor). Default 0. */
  offset?: number;
  /** Items per page. */
  limit: number;
  /** Case-insensitive substring of a prompt. */
  grep?: string;
  /** Bytes scanned at most per page (bounds a search over a huge file). */
  maxScanBytes?: number;
}

/** One page of a job's output rows; undefined when output.jsonl does not exist (job running or unknown). */
export function readRowsPage(store: ObjectStore, jobId: string, query: RowQuery): Promise<LinePage<RowView> | undefined> {
  return readLinePage(store, outputKey(jobId), {
    offset: query.offset ?? 0,
    limit: query.limit,
    ...(query.maxScanBytes !== undefined ? { maxScanBytes: query.maxScanBytes } : {}),
    map: (line) => {
      const row = rowView(line);
      return row && rowMatches(row, query.grep) ? row : undefined;
    },
  });
}

/** One page of a job's error records; undefined when errors.jsonl does not exist. */
export function readErrorsPage(store: ObjectStore, jobId: string, query: RowQuery): Promise<LinePage<ErrorView> | undefined> {
  return readLinePage(store, errorsKey(jobId), {
    offset: query.offset ?? 0,
    limit: query.limit,
    ...(query.maxScanBytes !== undefined ? { maxScanBytes: query.maxScanBytes } : {}),
    map: (line) => {
      const error = errorView(line);
      return error && errorMatches(error, query.grep) ? error : undefined;
    },
  });
}

/** Every matching row from `offset` on, one at a time (for streaming out); undefined when there is no output.jsonl. */
export async function streamRows(
  store: ObjectStore,
  jobId: string,
  query: { offset?: number; grep?: string },
): Promise<AsyncGenerator<{ line: Line; row: RowView }> | undefined> {
  const lines = await readLines(store, outputKey(jobId), query.offset ?? 0);
  if (!lines) return undefined;
  return (async function* () {
    for await (const line of lines) {
      const row = rowView(line);
      if (row && rowMatches(row, query.grep)) yield { line, row };
    }
  })();
}

/** Every matching error record from `offset` on; undefined when there is no errors.jsonl. */
export async function streamErrors(
  store: ObjectStore,
  jobId: string,
  query: { offset?: number; grep?: string },
): Promise<AsyncGenerator<{ line: Line; error: ErrorView }> | undefined> {
  const lines = await readLines(store, errorsKey(jobId), query.offset ?? 0);
  if (!lines) return undefined;
  return (async function* () {
    for await (const line of lines) {
      const error = errorView(line);
      if (error && errorMatches(error, query.grep)) yield { line, error };
    }
  })();
}

/** Below this many bytes between the bounds, findRow reads forward instead of probing. */
const LINEAR_SCAN_BYTES = 256 * 1024;

/**
 * The output row with input row number `row`, without reading the whole file: output.jsonl is in input
 * order, so a binary search over byte offsets (each probe a ranged GET that reads to the next row with
 * images) narrows it to a small slice, read forward. Rows without images carry no number and are skipped
 * by probes (and never found).
 */
export async function findRow(store: ObjectStore, jobId: string, row: number): Promise<RowView | undefined> {
  const key = outputKey(jobId);
  const info = await store.head(key);
  if (!info) return undefined;
  // Invariants: `lo` is a line start and every line before it has a number below `row`; the line with
  // `row`, if any, starts before `hi`.
  let lo = 0;
  let hi = info.size;
  while (hi - lo > LINEAR_SCAN_BYTES) {
    const mid = Math.floor((lo + hi) / 2);
    const probe = await firstNumberedRow(store, key, mid, info.size);
    if (!probe || (probe.view.row as number) > row) hi = mid;
    else if ((probe.view.row as number) < row) lo = probe.end;
    else return probe.view;
  }
  const lines = await readLines(store, key, lo, { size: info.size });
  for await (const line of lines ?? []) {
    const view = rowView(line);
    if (view?.row === row) return view;
    if ((view?.row ?? 0) > row) return undefined;
  }
  return undefined;
}

async function firstNumberedRow(
  store: ObjectStore,
  key: string,
  from: number,
  size: number,
): Promise<{ view: RowView; end: number } | undefined> {
  const lines = await readLines(store, key, from, { align: 'next', size });
  for await (const line of lines ?? []) {
    const view = rowView(line);
    if (view && view.row !== null) return { view, end: line.end };
  }
  return undefined;
}
