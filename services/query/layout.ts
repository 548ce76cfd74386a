/**
 * The checks that keep every key the query service reads inside one job's prefix (the keys themselves:
 * services/common/bucket-layout.ts).
 */
import { SINK_FOLDER, jobPrefix } from '../common/bucket-layout.ts';
import { JOB_ID_PATTERN, JOB_ID_RULE } from '../common/messages.ts';
import { badRequest } from './query-error.ts';

/** Folders under the job prefix that belong to the services, not to the dataset. */
const PRIVATE_FOLDERS = new Set([SINK_FOLDER]);

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

/** The job id of a `jobs/<id>/` common prefix, or undefined for something else. */
export function jobIdOfPrefix(prefix: string): string | undefined {
  const match = /^jobs\/([^/]+)\/$/.exec(prefix);
  const id = match?.[1];
  return id !== undefined && JOB_ID_PATTERN.test(id) ? id : undefined;
}
