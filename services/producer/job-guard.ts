/**
 * A job id names a folder of the bucket and the deterministic image keys under it: producing a job id
 * that was used before would overwrite a finished job's images (its output.jsonl then points at other
 * prompts' pictures) or mix two files into one job. So a used id is refused, unless forced: then the
 * old job's outputs are deleted first and the job starts clean.
 */
import { T2iError } from '../common/errors.ts';
import { jobPrefix, manifestKey } from '../common/bucket-layout.ts';
import type { ObjectStore } from '../common/object-store.ts';

export async function ensureJobIdUnused(store: ObjectStore, jobId: string, force: boolean): Promise<{ deleted: number }> {
  const prefix = jobPrefix(jobId);
  const page = await store.listPage(prefix, { limit: 1 });
  if (page.objects.length === 0) return { deleted: 0 };
  if (!force) {
    const manifest = await store.get(manifestKey(jobId));
    const status = manifest ? manifestStatus(manifest) : undefined;
    const held = status === 'failed' ? 'a failed job' : status ? 'a completed job' : 'an unfinished job';
    throw new T2iError(
      'INPUT_INVALID',
      `job id ${jobId} is already used (${store.uri(prefix)} holds ${held}): leave --job out for a new id, pick another, or pass --force to delete that job's outputs and start it again (only when none of its work is still in flight)`,
    );
  }
  return { deleted: await store.deletePrefix(prefix) };
}

function manifestStatus(manifest: Buffer): string {
  try {
    return (JSON.parse(manifest.toString('utf8')) as { status?: string }).status ?? 'complete';
  } catch {
    return 'complete';
  }
}
