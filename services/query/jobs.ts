/** Jobs in the bucket: one ListObjectsV2 page of `jobs/<id>/` prefixes at a time, a manifest read per job. */
import type { ObjectStore } from '../common/object-store.ts';
import { jobIdOfPrefix } from './layout.ts';
import type { JobCounts, JobStatus, JobSummary } from './types.ts';
import { imagesPrefix, jobPrefix, JOBS_PREFIX, manifestKey } from '../common/bucket-layout.ts';

/** Images of a running job are counted up to this many per job in listings (one list request). */
export const LIST_IMAGE_COUNT_CAP = 1000;
/** …and up to this many for a single job. */
export const JOB_IMAGE_COUNT_CAP = 10_000;

/** Manifests read at once while building a page of jobs. */
const MANIFEST_READS = 8;

export interface JobPage {
  jobs: JobSummary[];
  /** Continuation token of the listing; absent on the last page. */
  nextCursor?: string;
}

/** One page of jobs (at most `limit`, 1000 max), in key order (ULID job ids: oldest first). */
export async function listJobsPage(store: ObjectStore, options: { cursor?: string; limit?: number } = {}): Promise<JobPage> {
  const page = await store.listPage(JOBS_PREFIX, {
    delimiter: '/',
    limit: options.limit ?? 100,
    ...(options.cursor ? { token: options.cursor } : {}),
  });
  const ids = page.prefixes.map(jobIdOfPrefix).filter((id): id is string => id !== undefined);
  const jobs = await mapLimit(ids, MANIFEST_READS, (id) => summarizeJob(store, id, { imageCountCap: LIST_IMAGE_COUNT_CAP }));
  return { jobs: jobs.filter((j): j is JobSummary => j !== undefined), ...(page.nextToken ? { nextCursor: page.nextToken } : {}) };
}

/** Every job, page by page. */
export async function* listJobs(store: ObjectStore, pageSize = 100): AsyncGenerator<JobSummary> {
  let cursor: string | undefined;
  do {
    const page = await listJobsPage(store, { limit: pageSize, ...(cursor ? { cursor } : {}) });
    yield* page.jobs;
    cursor = page.nextCursor;
  } while (cursor);
}

/** One job with its manifest; undefined when nothing is stored under its prefix. */
export async function getJob(store: ObjectStore, jobId: string): Promise<JobSummary | undefined> {
  return summarizeJob(store, jobId, { imageCountCap: JOB_IMAGE_COUNT_CAP, includeManifest: true });
}

async function summarizeJob(
  store: ObjectStore,
  jobId: string,
  options: { imageCountCap: number; includeManifest?: boolean },
): Promise<JobSummary | undefined> {
  const manifest = await readManifest(store, jobId);
  if (manifest) return fromManifest(jobId, manifest, options.includeManifest ?? false);
  const images = await countImages(store, jobId, options.imageCountCap);
  if (images.count === 0) {
    // No manifest and no image: a job whose first results are not in yet, or no job at all.
    const any = await store.listPage(jobPrefix(jobId), { limit: 1 });
    if (any.objects.length === 0) return undefined;
  }
  return {
    jobId,
    status: 'running',
    counts: { images: images.count },
    ...(images.capped ? { imagesCapped: true } : {}),
    ...(images.newest ? { updated: images.newest.toISOString() } : {}),
    ...(images.oldest ? { started: images.oldest.toISOString() } : {}),
  };
}

/** The parsed manifest.json, or undefined when absent (job running) or unreadable. */
export async function readManifest(store: ObjectStore, jobId: string): Promise<Record<string, unknown> | undefined> {
  const bytes = await store.get(manifestKey(jobId));
  if (!bytes) return undefined;
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  } catch {
    // A manifest is written in one PUT, so a broken one is a broken job, still complete: show what we can.
    return {};
  }
}

/** Images stored so far, counted up to `cap` (rounded up to whole list pages); oldest and newest upload times. */
export async function countImages(
  store: ObjectStore,
  jobId: string,
  cap: number,
): Promise<{ count: number; capped: boolean; oldest?: Date; newest?: Date }> {
  let count = 0;
  let token: string | undefined;
  let oldest: Date | undefined;
  let newest: Date | undefined;
  do {
    const page = await store.listPage(imagesPrefix(jobId), { limit: 1000, ...(token ? { token } : {}) });
    count += page.objects.length;
    for (const object of page.objects) {
      if (object.lastModified && (!oldest || object.lastModified < oldest)) oldest = object.lastModified;
      if (object.lastModified && (!newest || object.lastModified > newest)) newest = object.lastModified;
    }
    token = page.nextToken;
  } while (token && count < cap);
  return { count, capped: token !== undefined, ...(oldest ? { oldest } : {}), ...(newest ? { newest } : {}) };
}

function fromManifest(jobId: string, manifest: Record<string, unknown>, includeManifest: boolean): JobSummary {
  const counts: JobCounts = {};
  const rawCounts = manifest.counts;
  if (typeof rawCounts === 'object' && rawCounts !== null) {
    for (const name of ['rows', 'inputRows', 'prompts', 'images', 'errors', 'badRows', 'failedPrompts', 'partialRows'] as const) {
      const value = (rawCounts as Record<string, unknown>)[name];
      if (typeof value === 'number') counts[name] = value;
    }
  }
  const timings = typeof manifest.timings === 'object' && manifest.timings !== null ? (manifest.timings as Record<string, unknown>) : {};
  const status: JobStatus = manifest.status === 'failed' ? 'failed' : 'complete';
  // The sink writes `model: null` with `models: [...]` when images came from more than one model.
  const model =
    describeModel(manifest.model) ??
    (Array.isArray(manifest.models) ? manifest.models.map(describeModel).filter(Boolean).join(', ') || undefined : undefined);
  const source = typeof manifest.source === 'string' ? manifest.source : undefined;
  const started = isoDate(manifest.started ?? manifest.startedAt ?? timings.started ?? timings.startedAt);
  const finished = isoDate(manifest.finished ?? manifest.finishedAt ?? timings.finished ?? timings.finishedAt);
  const promptFollowing = evalSummary(manifest.eval);
  return {
    jobId: typeof manifest.jobId === 'string' && manifest.jobId === jobId ? manifest.jobId : jobId,
    status,
    counts,
    ...(model ? { model } : {}),
    ...(source ? { source } : {}),
    ...(started ? { started } : {}),
    ...(finished ? { finished } : {}),
    ...(includeManifest ? { manifest } : {}),
    ...(promptFollowing ? { promptFollowing } : {}),
  };
}

/** The `eval` block `t2i eval` adds to a manifest, reduced to rates; undefined when absent or malformed. */
function evalSummary(value: unknown): JobSummary['promptFollowing'] {
  if (typeof value !== 'object' || value === null) return undefined;
  const e = value as { judged?: unknown; allRight?: unknown; attributes?: Record<string, { rate?: unknown }> };
  if (typeof e.judged !== 'number' || typeof e.allRight !== 'number' || typeof e.attributes !== 'object' || e.attributes === null)
    return undefined;
  const attributes: Record<string, number> = {};
  for (const [name, a] of Object.entries(e.attributes)) if (typeof a?.rate === 'number') attributes[name] = a.rate;
  return { judged: e.judged, allRight: e.allRight, attributes };
}

/** A model as one string: a name or path as written, or the name/id/dir of an object. */
function describeModel(model: unknown): string | undefined {
  if (typeof model === 'string') return model;
  if (typeof model === 'object' && model !== null) {
    const m = model as Record<string, unknown>;
    for (const field of ['name', 'id', 'repo', 'dir', 'path']) if (typeof m[field] === 'string') return m[field] as string;
  }
  return undefined;
}

/** ISO 8601 from an ISO string or epoch milliseconds; undefined for anything else. */
function isoDate(value: unknown): string | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return new Date(value).toISOString();
  if (typeof value === 'string' && value !== '') {
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? value : date.toISOString();
  }
  return undefined;
}

/** Runs `fn` over `items` with at most `limit` at once, keeping order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index] as T);
    }
  });
  await Promise.all(workers);
  return results;
}
