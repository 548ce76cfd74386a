/**
 * The sink's ledger of open jobs in the bucket: `_sink/open-jobs/<jobId>.json` holds a job's `started`
 * and `produced` events from the moment the sink sees them until the job completes or fails.
 *
 * The jobs topic keeps events for its retention (7 days by default) and the sink re-reads it at every
 * start. A job still open when its events expire would otherwise lose its `produced` event (the count
 * completion waits for) on the next restart and wait forever. With the ledger, a restarted sink lists
 * the open jobs, takes back the events the topic no longer has, and completes or fails each of them.
 * One small object per open job, deleted at the end: listing the prefix costs one request per 1,000
 * open jobs, never a walk over the images.
 */
import { OPEN_JOBS_PREFIX, openJobKey } from '../common/bucket-layout.ts';
import type { JobEvent } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';

export interface OpenJobRecord {
  jobId: string;
  started?: JobEvent;
  produced?: JobEvent;
}

export async function writeOpenJob(store: ObjectStore, record: OpenJobRecord): Promise<void> {
  await store.put(openJobKey(record.jobId), `${JSON.stringify(record)}\n`, 'application/json');
}

export async function deleteOpenJob(store: ObjectStore, jobId: string): Promise<void> {
  await store.delete(openJobKey(jobId));
}

/** Every open job the ledger holds (records that cannot be read are skipped with their key reported). */
export async function readOpenJobs(store: ObjectStore, onUnreadable: (key: string, error: unknown) => void): Promise<OpenJobRecord[]> {
  const records: OpenJobRecord[] = [];
  for await (const object of store.list(OPEN_JOBS_PREFIX)) {
    if (!object.key.endsWith('.json')) continue;
    try {
      const body = await store.get(object.key);
      if (!body) continue; // deleted since the listing: the job ended
      const record = JSON.parse(body.toString('utf8')) as OpenJobRecord;
      if (typeof record.jobId === 'string') records.push(record);
    } catch (error) {
      onUnreadable(object.key, error);
    }
  }
  return records;
}
