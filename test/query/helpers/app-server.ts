import { after } from 'node:test';
import type { ObjectStore } from '../../../services/common/object-store.ts';
import { createQueryApp, type QueryAppOptions } from '../../../services/query/app.ts';
import { listen } from '../../../services/query/server.ts';
import { sampleRows, writeFixtureJob, type FixtureRow } from './fixture-jobs.ts';

/** The query app on a free loopback port, closed when the test file ends. */
export async function startApp(store: ObjectStore, options: Omit<QueryAppOptions, 'store'> = {}): Promise<{ url: string; port: number }> {
  const server = await listen(createQueryApp({ store, ...options }), 0, '127.0.0.1');
  after(() => server.close());
  return { url: server.url.replace(/\/$/, ''), port: server.port };
}

/**
 * Rows 1..13 of an input file where line 5 was bad: 12 output rows, row 3 with two prompts of which
 * prompt 1 failed. Rows cycle through conversations / prompt / prompts.
 */
export function completeJobRows(): FixtureRow[] {
  return sampleRows(12).map((r) => {
    const row = r.row >= 5 ? r.row + 1 : r.row;
    return { ...r, row, ...(row === 3 ? { failed: [1] } : {}) };
  });
}

/** Three jobs: `job-a` complete (above), `job-b` running (two rows' images only), `job-c` complete with one row. */
export async function writeStandardJobs(store: ObjectStore): Promise<void> {
  await writeFixtureJob(store, {
    jobId: 'job-a',
    rows: completeJobRows(),
    badLines: [{ line: 5, error: 'invalid JSON: Unexpected token', raw: '{"prompt": oops' }],
  });
  await writeFixtureJob(store, { jobId: 'job-b', rows: sampleRows(2), complete: false });
  await writeFixtureJob(store, { jobId: 'job-c', rows: [{ row: 1, input: { prompt: 'a single quiet harbor' } }], size: 32 });
}
