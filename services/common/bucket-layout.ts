/**
 * The bucket layout: every object key the services write or read (docs/design.md, Output). Writers (the
 * worker's images, the sink's outputs and working files, `t2i eval`) and readers (the query service,
 * `t2i run`, the producer's job-id guard) all take their keys from here.
 *
 *   jobs/<jobId>/images/<row, 9 digits>-<k>.png     one image per prompt (deterministic: a retry overwrites)
 *   jobs/<jobId>/output.jsonl, errors.jsonl          the job's results, written by the sink
 *   jobs/<jobId>/manifest.json                       written last: complete (or failed)
 *   jobs/<jobId>/eval.jsonl                          prompt-following scores (t2i eval)
 *   jobs/<jobId>/thumbs/<size>/<row>-<k>.webp        the query service's thumbnail cache
 *   jobs/<jobId>/_sink/parts/<id>-n<count>.jsonl     the sink's sorted parts while the job runs
 *   _sink/open-jobs/<jobId>.json                     the sink's ledger of open jobs
 */

export const JOBS_PREFIX = 'jobs/';

export function jobPrefix(jobId: string): string {
  return `${JOBS_PREFIX}${jobId}/`;
}

export const imagesPrefix = (jobId: string): string => `${jobPrefix(jobId)}images/`;

/** Deterministic image key, so a retry overwrites instead of duplicating. */
export function imageKey(jobId: string, row: number, promptIndex: number): string {
  return `${imagesPrefix(jobId)}${String(row).padStart(9, '0')}-${promptIndex}.png`;
}

export const outputKey = (jobId: string): string => `${jobPrefix(jobId)}output.jsonl`;
export const errorsKey = (jobId: string): string => `${jobPrefix(jobId)}errors.jsonl`;
export const manifestKey = (jobId: string): string => `${jobPrefix(jobId)}manifest.json`;
export const evalKey = (jobId: string): string => `${jobPrefix(jobId)}eval.jsonl`;

/** Where the gallery's thumbnail of an image is cached: beside the images, under the job's prefix. */
export function thumbKey(jobId: string, row: number, k: number, size: number): string {
  return `${jobPrefix(jobId)}thumbs/${size}/${String(row).padStart(9, '0')}-${k}.webp`;
}

/** The job's folder of service working files (never served by the query). */
export const SINK_FOLDER = '_sink';

export function sinkPrefix(jobId: string): string {
  return `${jobPrefix(jobId)}${SINK_FOLDER}/`;
}

export function partsPrefix(jobId: string): string {
  return `${sinkPrefix(jobId)}parts/`;
}

/**
 * A part's key carries its line count (`<sortable id>-n<count>.jsonl`), so a restarted sink rebuilds a
 * job's received count from one listing, without reading the parts.
 */
export function partKey(jobId: string, id: string, count: number): string {
  return `${partsPrefix(jobId)}${id}-n${count}.jsonl`;
}

const PART_KEY = /\/_sink\/parts\/([0-9A-Za-z]+)-n(\d+)\.jsonl$/;

export function parsePartKey(key: string): { id: string; count: number } | undefined {
  const match = PART_KEY.exec(key);
  return match ? { id: match[1] as string, count: Number(match[2]) } : undefined;
}

export const OPEN_JOBS_PREFIX = `${SINK_FOLDER}/open-jobs/`;

export function openJobKey(jobId: string): string {
  return `${OPEN_JOBS_PREFIX}${jobId}.json`;
}

/** An image's place in the layout, parsed from its URI (s3://bucket/key or https://…/key). */
export function parseImageUri(uri: string): { key: string; jobId: string; row: number; k: number } | undefined {
  const match = /(?:^|\/)(jobs\/([A-Za-z0-9._-]{1,64})\/images\/(\d{9})-(\d+)\.png)(?:[?#].*)?$/.exec(uri);
  if (!match) return undefined;
  return { key: match[1] as string, jobId: match[2] as string, row: Number(match[3]), k: Number(match[4]) };
}
