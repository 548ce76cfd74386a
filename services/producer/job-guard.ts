/**
 * A job id names a folder of the bucket and the deterministic image keys under it: producing a job id
 * that was used before would overwrite a finished job's images (its output.jsonl then points at other
 * prompts' pictures) or mix two files into one job. So a used id is refused, unless forced: then the
 * old job's outputs are deleted first and the job starts clean.
 */
import { T2iError } from '../common/errors.ts';
import { jobPrefix } from '../common/messages.ts';
import type { ObjectStore } from '../common/object-store.ts';

export async function ensureJobIdUnused(store: ObjectStore, jobId: string, force: boolean): Promise<{ deleted: number }> {
  const prefix = jobPrefix(jobId);
  const page = await store.listPage(prefix, { limit: 1 });
  if (page.objects.length === 0) return { deleted: 0 };
  if (!force) {
    const complete = (await store.head(`${prefix}manifest.json`)) !== undefined;
    throw new T2iError(
      'INPUT_INVALID',
      `job id ${jobId} is already used (${store.uri(prefix)} holds ${complete ? 'a completed job' : 'an unfinished job'}): leave --job out for a new id, pick another, or pass --force to delete that job's outputs and start it again (only when none of its work is still in flight)`,
    );
  }
  return { deleted: await store.deletePrefix(prefix) };
}
