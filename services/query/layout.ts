/**
 * The bucket layout the sink and workers write (design.md, Output), and the checks that keep every key
 * the query service reads inside one job's prefix.
 */
import { JOB_ID_PATTERN, JOB_ID_RULE, imageKey, jobPrefix } from '../common/messages.ts';
import { badRequest } from './query-error.ts';

export const JOBS_PREFIX = 'jobs/';

export const outputKey = (jobId: string): string => `${jobPrefix(jobId)}output.jsonl`;
export const errorsKey = (jobId: string): string => `${jobPrefix(jobId)}errors.jsonl`;
export const manifestKey = (jobId: string): string => `${jobPrefix(jobId)}manifest.json`;
export const imagesPrefix = (jobId: string): string => `${jobPrefix(jobId)}images/`;
export { imageKey, jobPrefix };

/** Where the gallery's thumbnail of an image is cached: beside the images, under the job's prefix. */
export function thumbKey(jobId: string, row: number, k: number, size: number): string {
  return `${jobPrefix(jobId)}thumbs/${size}/${String(row).padStart(9, '0')}-${k}.webp`;
}

/** Folders under the job prefix that belong to the services, not to the dataset. */
const PRIVATE_FOLDERS = new Set(['_sink']);

/** The job id, or a 400 answer naming the pattern. */
export function validateJobId(jobId: string): string {
  if (!JOB_ID_PATTERN.test(jobId)) {
    throw badRequest(`invalid job id ${JSON.stringify(jobId.slice(0, 80))}: expected ${JOB_ID_RULE}`);
  }
  return jobId;
}

/** A row number (1-based input line) or a 400 answer. */
export function parseRowNumber(text: string): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1)
    throw badRequest(`invalid row ${JSON.stringify(text.slice(0, 20))}: expected a whole number from 1`);
  return Number(text);
}

/** A prompt index (K, 0-based) or a 400 answer. */
export function parseImageIndex(text: string): number {
  if (!/^\d{1,6}$/.test(text)) throw badRequest(`invalid image index ${JSON.stringify(text.slice(0, 20))}: expected a whole number from 0`);
  return Number(text);
}

/**
 * A key relative to the job's prefix (e.g. `images/000000001-0.png`), already percent-decoded segment by
 * segment, checked so it cannot leave the prefix: no empty, "." or ".." segment, no backslash or NUL, not
 * absolute, and not the services' private working folders. Returns the full bucket key.
 */
export function jobFileKey(jobId: string, segments: readonly string[]): string {
  if (segments.length === 0) throw badRequest('missing file path');
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..' || /[\\\0/]/.test(segment)) {
      throw badRequest('invalid file path: it must stay inside the job (no "..", ".", empty segments, "/" or "\\" in a segment)');
    }
  }
  if (PRIVATE_FOLDERS.has(segments[0] as string)) throw badRequest(`${segments[0]}/ holds the services' working files and is not served`);
  return `${jobPrefix(validateJobId(jobId))}${segments.join('/')}`;
}

/** An image's place in the layout, parsed from its URI (s3://bucket/key or https://…/key). */
export function parseImageUri(uri: string): { key: string; jobId: string; row: number; k: number } | undefined {
  const match = /(?:^|\/)(jobs\/([A-Za-z0-9._-]{1,64})\/images\/(\d{9})-(\d+)\.png)(?:[?#].*)?$/.exec(uri);
  if (!match) return undefined;
  return { key: match[1] as string, jobId: match[2] as string, row: Number(match[3]), k: Number(match[4]) };
}

/** The job id of a `jobs/<id>/` common prefix, or undefined for something else. */
export function jobIdOfPrefix(prefix: string): string | undefined {
  const match = /^jobs\/([^/]+)\/$/.exec(prefix);
  const id = match?.[1];
  return id !== undefined && JOB_ID_PATTERN.test(id) ? id : undefined;
}
