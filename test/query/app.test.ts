import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import sharp from 'sharp';
import { Registry } from 'prom-client';
import { ObjectStore } from '../../services/common/object-store.ts';
import { createTestEnv } from '../helpers/env.ts';
import type { JobSummary, RowView } from '../../services/query/types.ts';
import { startApp, writeStandardJobs } from './helpers/app-server.ts';
import { fixtureSeed } from './helpers/fixture-jobs.ts';

const env = await createTestEnv();
const { store } = env;
await writeStandardJobs(store);
const registry = new Registry();
const { url } = await startApp(store, { registry, thumbSize: 48 });

async function getJson(path: string, init?: RequestInit): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, init);
  const text = await res.text();
  assert.match(res.headers.get('content-type') ?? '', /application\/json/, `${path}: ${text}`);
  return { status: res.status, body: JSON.parse(text) as Record<string, unknown> };
}

test('lists jobs page by page with status, counts, model and dates', async () => {
  const first = await getJson('/api/jobs?limit=2');
  assert.equal(first.status, 200);
  const jobs1 = first.body.jobs as JobSummary[];
  assert.deepEqual(
    jobs1.map((j) => j.jobId),
    ['job-a', 'job-b'],
  );
  assert.equal(typeof first.body.nextCursor, 'string');
  const second = await getJson(`/api/jobs?limit=2&cursor=${encodeURIComponent(first.body.nextCursor as string)}`);
  const jobs2 = second.body.jobs as JobSummary[];
  assert.deepEqual(
    jobs2.map((j) => j.jobId),
    ['job-c'],
  );
  assert.equal(second.body.nextCursor, undefined);

  const [a, b] = jobs1 as [JobSummary, JobSummary];
  assert.equal(a.status, 'complete');
  assert.deepEqual(a.counts, { rows: 12, inputRows: 13, prompts: 16, images: 15, errors: 2, badRows: 1 });
  assert.equal(a.model, 'tiny-flux');
  assert.equal(a.started, '2025-03-01T10:00:00.000Z');
  assert.equal(a.finished, '2025-03-01T10:05:00.000Z');
  assert.equal(b.status, 'running');
  assert.equal(b.counts.images, 2, 'a running job: images counted so far');
  assert.equal(b.model, undefined);
});

test('one job, with its manifest; unknown and invalid ids answer 404 and 400', async () => {
  const job = await getJson('/api/jobs/job-a');
  assert.equal(job.status, 200);
  assert.equal((job.body.manifest as Record<string, unknown>).source, 'prompts.jsonl');
  const missing = await getJson('/api/jobs/nope');
  assert.equal(missing.status, 404);
  assert.equal((missing.body.error as { code: string }).code, 'not_found');
  const bad = await getJson('/api/jobs/bad%20id');
  assert.equal(bad.status, 400);
  assert.match((bad.body.error as { message: string }).message, /invalid job id/);
});

test('rows page by page with a byte-offset cursor cover every row exactly once, in order', async () => {
  const seen: RowView[] = [];
  let cursor: string | undefined;
  let pages = 0;
  do {
    const page = await getJson(`/api/jobs/job-a/rows?limit=5${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(page.status, 200);
    seen.push(...(page.body.rows as RowView[]));
    cursor = page.body.nextCursor as string | undefined;
    pages++;
  } while (cursor);
  assert.equal(pages, 3);
  assert.deepEqual(
    seen.map((r) => r.row),
    [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13],
  );
  const row3 = seen[2] as RowView;
  assert.deepEqual(row3.prompts, ['a bowl of ramen, studio light #3', 'a bowl of ramen, studio light, variant #3']);
  assert.equal(row3.images.length, 1, 'prompt 1 of row 3 failed');
  assert.equal(row3.images[0]?.k, 0);
  assert.equal(row3.images[0]?.meta?.seed, fixtureSeed(3, 0));
  assert.match(row3.images[0]?.uri ?? '', new RegExp(`^s3://${store.bucket}/jobs/job-a/images/000000003-0\\.png$`));
  assert.deepEqual(seen[0]?.prompts, ['a red fox in fresh snow #1'], 'conversations: user messages only');
  assert.equal(seen[0]?.data.id, 'r1', 'input fields pass through');
});

test('rows filtered by prompt text (case-insensitive), a row by number, and cursor errors', async () => {
  const fox = await getJson('/api/jobs/job-a/rows?q=RED%20FOX');
  assert.deepEqual(
    (fox.body.rows as RowView[]).map((r) => r.row),
    [1, 8],
  );
  const variant = await getJson('/api/jobs/job-a/rows?q=variant&limit=1');
  assert.deepEqual(
    (variant.body.rows as RowView[]).map((r) => r.row),
    [3],
  );
  const next = await getJson(`/api/jobs/job-a/rows?q=variant&limit=1&cursor=${variant.body.nextCursor as string}`);
  assert.deepEqual(
    (next.body.rows as RowView[]).map((r) => r.row),
    [7],
  );
  const none = await getJson('/api/jobs/job-a/rows?q=zebra');
  assert.deepEqual(none.body.rows, []);
  assert.equal(none.body.nextCursor, undefined);

  const row7 = await getJson('/api/jobs/job-a/rows/7');
  assert.equal(row7.status, 200);
  assert.equal((row7.body as unknown as RowView).row, 7);
  assert.equal((await getJson('/api/jobs/job-a/rows/5')).status, 404, 'line 5 was bad: no output row');
  assert.equal((await getJson('/api/jobs/job-a/rows/0')).status, 400);

  assert.equal((await getJson('/api/jobs/job-a/rows?cursor=3')).status, 400, 'a cursor inside a line is refused');
  assert.equal((await getJson('/api/jobs/job-a/rows?cursor=abc')).status, 400);
  assert.equal((await getJson('/api/jobs/job-a/rows?limit=0')).status, 400);
  const past = await getJson('/api/jobs/job-a/rows?cursor=99999999');
  assert.deepEqual(past.body.rows, []);

  const running = await getJson('/api/jobs/job-b/rows');
  assert.equal(running.status, 404);
  assert.match((running.body.error as { message: string }).message, /no output\.jsonl yet \(status running\)/);
  assert.equal((await getJson('/api/jobs/nope/rows')).status, 404);
});

test('NDJSON streams of rows and errors', async () => {
  const res = await fetch(`${url}/api/jobs/job-a/rows.ndjson?q=lighthouse`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /application\/x-ndjson/);
  const lines = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { prompt?: string; images: string[] });
  assert.equal(lines.length, 2);
  assert.ok(lines.every((l) => Array.isArray(l.images)));
  const limited = await (await fetch(`${url}/api/jobs/job-a/rows.ndjson?limit=3`)).text();
  assert.equal(limited.trim().split('\n').length, 3);

  const errors = await getJson('/api/jobs/job-a/errors');
  const records = errors.body.errors as { line: number; stage: string }[];
  assert.deepEqual(
    records.map((e) => [e.line, e.stage]),
    [
      [5, 'parse'],
      [3, 'engine'],
    ],
  );
  const stream = await (await fetch(`${url}/api/jobs/job-a/errors.ndjson?q=oops`)).text();
  assert.equal(stream.trim().split('\n').length, 1);
  assert.deepEqual((await getJson('/api/jobs/job-b/errors')).body.errors, []);
});

test('images: PNG bytes through the proxy, metadata, presigned URL, thumbnails cached in the bucket, listing for a running job', async () => {
  const res = await fetch(`${url}/api/jobs/job-a/images/3/0`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'image/png');
  const bytes = Buffer.from(await res.arrayBuffer());
  assert.ok(bytes.equals((await store.get('jobs/job-a/images/000000003-0.png')) as Buffer));

  const meta = await getJson('/api/jobs/job-a/images/3/0/meta');
  assert.deepEqual(meta.body.meta, {
    prompt: 'a bowl of ramen, studio light #3',
    seed: 3000,
    width: 64,
    height: 64,
    steps: 4,
    guidance: 3.5,
    model: 'tiny-flux',
  });
  assert.equal((await getJson('/api/jobs/job-a/images/3/1')).status, 404, 'the failed prompt has no image');
  assert.equal((await getJson('/api/jobs/job-a/images/3/1/meta')).status, 404);

  const signed = await getJson('/api/jobs/job-a/images/3/0/url?expires=120');
  assert.equal(signed.body.expiresIn, 120);
  const direct = await fetch(signed.body.url as string);
  assert.equal(direct.status, 200);
  assert.ok(Buffer.from(await direct.arrayBuffer()).equals(bytes));
  assert.equal((await getJson('/api/jobs/job-a/images/3/0/url?expires=0')).status, 400);
  assert.equal((await getJson('/api/jobs/job-a/images/3/0/url?expires=9999999')).status, 400);

  const thumb = await fetch(`${url}/api/jobs/job-a/thumbs/3/0`);
  assert.equal(thumb.status, 200);
  assert.equal(thumb.headers.get('content-type'), 'image/webp');
  const info = await sharp(Buffer.from(await thumb.arrayBuffer())).metadata();
  assert.equal(info.format, 'webp');
  assert.equal(info.width, 48);
  assert.ok(await store.head('jobs/job-a/thumbs/48/000000003-0.webp'), 'thumbnail cached under the job prefix');
  assert.equal((await fetch(`${url}/api/jobs/job-a/thumbs/3/1`)).status, 404);

  const listed = await getJson('/api/jobs/job-b/images?limit=2');
  assert.deepEqual(
    (listed.body.images as { row: number; k: number }[]).map((i) => [i.row, i.k]),
    [
      [1, 0],
      [2, 0],
    ],
  );
  assert.equal((await getJson('/api/jobs/job-b/images/2/0/meta')).status, 200, 'images of a running job are served');
});

test('files of a job are served; path traversal and private folders are refused', async () => {
  const manifest = await getJson('/api/jobs/job-a/files/manifest.json');
  assert.equal(manifest.body.jobId, 'job-a');
  const png = await fetch(`${url}/api/jobs/job-a/files/images/000000001-0.png`);
  assert.equal(png.status, 200);
  assert.equal(png.headers.get('content-type'), 'image/png');
  await png.arrayBuffer();
  assert.equal((await getJson('/api/jobs/job-a/files/nothing.json')).status, 404);

  const attempts = [
    '/api/jobs/job-a/files/../job-c/manifest.json',
    '/api/jobs/job-a/files/%2e%2e/job-c/manifest.json',
    '/api/jobs/job-a/files/%2E%2E%2Fjob-c%2Fmanifest.json',
    '/api/jobs/job-a/files/images/..%2f..%2fjob-c%2fmanifest.json',
    '/api/jobs/job-a/files//jobs/job-c/manifest.json',
    '/api/jobs/job-a/files/.%2F..%2Fjob-c/manifest.json',
    '/api/jobs/job-a/files/images%5C..%5C..%5Cjob-c%5Cmanifest.json',
    '/api/jobs/..%2Fjob-c/files/manifest.json',
    '/api/jobs/%2e%2e/files/job-c/manifest.json',
    '/api/jobs/job-a/files/_sink/state.json',
    '/api/jobs/job-a/files/%zz',
  ];
  for (const attempt of attempts) {
    // fetch() would normalize "/../"; send the raw path with node:http instead.
    const res = await rawGet(attempt);
    assert.equal(res.status, 400, `${attempt} → ${res.status} ${res.body}`);
    assert.doesNotMatch(res.body, /"jobId":"job-c"/);
  }
});

test('errors are JSON; read-only methods; health endpoints and metrics', async () => {
  const post = await fetch(`${url}/api/jobs`, { method: 'POST', body: '{}' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
  assert.equal(((await post.json()) as { error: { code: string } }).error.code, 'method_not_allowed');
  assert.equal((await getJson('/api/elsewhere')).status, 404);
  assert.equal((await getJson('/livez')).status, 200);
  assert.equal((await getJson('/readyz')).status, 200);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /t2i_query_requests_total\{route="rows",status="200"\} \d+/);
  const page = await fetch(`${url}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>t2i gallery<\/title>/);
});

test('bearer token enforced on /api/ when set', async () => {
  const secured = await startApp(store, { token: 's3cret-token' });
  const none = await fetch(`${secured.url}/api/jobs`);
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer');
  assert.equal(((await none.json()) as { error: { code: string } }).error.code, 'unauthorized');
  assert.equal((await fetch(`${secured.url}/api/jobs`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  assert.equal(
    (await fetch(`${secured.url}/api/jobs/job-a/images/1/0`, { headers: { authorization: 'Bearer s3cret-token-and-more' } })).status,
    401,
  );
  const ok = await fetch(`${secured.url}/api/jobs`, { headers: { authorization: 'Bearer s3cret-token' } });
  assert.equal(ok.status, 200);
  assert.equal(((await ok.json()) as { jobs: unknown[] }).jobs.length, 3);
  const img = await fetch(`${secured.url}/api/jobs/job-a/images/1/0?access_token=s3cret-token`);
  assert.equal(img.status, 200);
  await img.arrayBuffer();
  assert.equal((await fetch(`${secured.url}/api/jobs/..%2Fx/files/a?access_token=nope`)).status, 401, 'no token: 401 before anything else');
  assert.equal((await fetch(`${secured.url}/livez`)).status, 200, 'probes need no token');
  assert.equal((await fetch(`${secured.url}/`)).status, 200, 'the page itself holds no data');
});

async function rawGet(path: string): Promise<{ status: number; body: string }> {
  const http = await import('node:http');
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: target.hostname, port: target.port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('secure by default: /metrics needs the token, 500s say nothing about the backend, logs never hold the token, nosniff everywhere', async () => {
  const secured = await startApp(store, { token: 's3cret-token', registry: new Registry() });
  assert.equal((await fetch(`${secured.url}/metrics`)).status, 401, 'metrics behind the token when one is set');
  assert.equal((await fetch(`${secured.url}/metrics`, { headers: { authorization: 'Bearer s3cret-token' } })).status, 200);
  for (const path of ['/', '/livez', '/api/jobs/job-a/images/1/0?access_token=s3cret-token', '/api/jobs/nope?access_token=s3cret-token']) {
    const res = await fetch(`${secured.url}${path}`);
    await res.arrayBuffer();
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
  }

  // A backend that fails: the client learns only that it failed and a request id; the log has the rest.
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const broken = new ObjectStore({ ...env.config.s3, endpoint: 'http://127.0.0.1:9', bucket: 'private-bucket-name' });
  const failing = await startApp(broken, { token: 's3cret-token', logger });
  const res = await fetch(`${failing.url}/api/jobs?access_token=s3cret-token`);
  assert.equal(res.status, 500);
  const body = (await res.json()) as { error: { code: string; message: string } };
  assert.equal(body.error.code, 'internal');
  const requestId = /request id ([0-9a-f-]{36})/.exec(body.error.message)?.[1];
  assert.ok(requestId, body.error.message);
  assert.doesNotMatch(body.error.message, /127\.0\.0\.1|private-bucket-name|ECONNREFUSED/);
  const logged = lines
    .map((l) => JSON.parse(l) as { requestId?: string; url?: string; msg: string })
    .find((l) => l.requestId === requestId);
  assert.ok(logged, 'the failure is logged under the same request id');
  assert.equal(logged.url, '/api/jobs?access_token=***');
  assert.ok(!lines.join('').includes('s3cret-token'), 'the token is in no log line');
  broken.close();
});
