import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PACKAGE_ROOT } from '../../services/common/paths.ts';
import { createTestEnv } from '../helpers/env.ts';
import { completeJobRows } from './helpers/app-server.ts';
import { sampleRows, writeFixtureJob } from './helpers/fixture-jobs.ts';

const testEnv = await createTestEnv();
const { store } = testEnv;
const jobA = await writeFixtureJob(store, {
  jobId: 'job-a',
  rows: completeJobRows(),
  badLines: [{ line: 5, error: 'invalid JSON: Unexpected token', raw: '{"prompt": oops' }],
});
await writeFixtureJob(store, { jobId: 'job-b', rows: sampleRows(2), complete: false });
await writeFixtureJob(store, { jobId: 'job-c', rows: [{ row: 1, input: { prompt: 'a single quiet harbor' } }], size: 32 });
const childEnv = { ...process.env, ...testEnv.env, T2I_LOG_LEVEL: 'warn' };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 't2i-query-cli-'));

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function t2i(args: string[], env: NodeJS.ProcessEnv = childEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), ...args], { cwd: tmp, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('t2i query jobs: a table with status, counts, model and dates; --json; --limit', async () => {
  const [table, json, limited] = await Promise.all([
    t2i(['query', 'jobs']),
    t2i(['query', 'jobs', '--json']),
    t2i(['query', 'jobs', '--limit', '1']),
  ]);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0] ?? '', /^JOB\s+STATUS\s+ROWS\s+IMAGES\s+ERRORS\s+MODEL\s+STARTED\s+FINISHED$/);
  assert.equal(lines.length, 4);
  assert.match(lines[1] ?? '', /^job-a\s+complete\s+12\s+15\s+2\s+tiny-flux\s+2025-03-01 10:00:00Z\s+2025-03-01 10:05:00Z$/);
  assert.match(lines[2] ?? '', /^job-b\s+running\s+-\s+2\s+-\s+-\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\s+\(upd .*\)$/);
  assert.match(lines[3] ?? '', /^job-c\s+complete\s+1\s+1\s+0\s+tiny-flux/);

  assert.equal(json.code, 0, json.stderr);
  const jobs = json.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { jobId: string; status: string; counts: { images: number } });
  assert.deepEqual(
    jobs.map((j) => [j.jobId, j.status, j.counts.images]),
    [
      ['job-a', 'complete', 15],
      ['job-b', 'running', 2],
      ['job-c', 'complete', 1],
    ],
  );

  assert.equal(limited.code, 0, limited.stderr);
  assert.equal(limited.stdout.trimEnd().split('\n').length, 2, 'header and one job');
});

test('t2i query rows: human-readable rows, --grep, --json as stored, --limit, --errors', async () => {
  const [all, grep, limited, errors, errorsJson] = await Promise.all([
    t2i(['query', 'rows', 'job-a']),
    t2i(['query', 'rows', 'job-a', '--grep', 'RED FOX', '--json']),
    t2i(['query', 'rows', 'job-a', '--limit', '3']),
    t2i(['query', 'rows', 'job-a', '--errors']),
    t2i(['query', 'rows', 'job-a', '--errors', '--json']),
  ]);
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual(all.stdout.match(/^row \d+$/gm), [
    'row 1',
    'row 2',
    'row 3',
    'row 4',
    'row 6',
    'row 7',
    'row 8',
    'row 9',
    'row 10',
    'row 11',
    'row 12',
    'row 13',
  ]);
  const uri = (row: number, k: number) => `s3://${store.bucket}/jobs/job-a/images/${String(row).padStart(9, '0')}-${k}.png`;
  assert.ok(
    all.stdout.startsWith(`row 1\n  prompt 0: a red fox in fresh snow #1\n  image 0: ${uri(1, 0)}  (64x64, seed 1000, 4 steps)\nrow 2\n`),
    all.stdout.slice(0, 300),
  );
  assert.ok(
    all.stdout.includes(
      `row 3\n  prompt 0: a bowl of ramen, studio light #3\n  prompt 1: a bowl of ramen, studio light, variant #3\n  image 0: ${uri(3, 0)}  (64x64, seed 3000, 4 steps)\nrow 4\n`,
    ),
  );
  assert.match(all.stderr, /12 rows in job job-a/);

  assert.equal(grep.code, 0, grep.stderr);
  assert.deepEqual(grep.stdout.trimEnd().split('\n'), [jobA.outputLines[0], jobA.outputLines[6]], '--json prints the stored lines');
  assert.match(grep.stderr, /2 rows matching "RED FOX"/);

  assert.equal(limited.code, 0, limited.stderr);
  assert.deepEqual(limited.stdout.match(/^row \d+$/gm), ['row 1', 'row 2', 'row 3']);

  assert.equal(errors.code, 0, errors.stderr);
  assert.equal(
    errors.stdout,
    'line 5 [parse] invalid JSON: Unexpected token\n  raw: {"prompt": oops\nline 3 prompt 1 [engine] engine failed on this prompt\n  prompt: a bowl of ramen, studio light, variant #3\n',
  );
  assert.deepEqual(errorsJson.stdout.trimEnd().split('\n'), jobA.errorLines);
});

test('t2i query rows: a running job, an unknown job and a bad id fail with a message', async () => {
  const [running, unknown, bad] = await Promise.all([
    t2i(['query', 'rows', 'job-b']),
    t2i(['query', 'rows', 'nope']),
    t2i(['query', 'rows', '../job-a']),
  ]);
  assert.equal(running.code, 1);
  assert.match(running.stderr, /job job-b is still running: output\.jsonl is written when it completes \(2 images so far/);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no job nope in s3:\/\//);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /invalid job id "\.\.\/job-a"/);
  assert.equal(running.stdout + unknown.stdout + bad.stdout, '');
});

test('t2i query image: download (K defaults to 0), presigned URL with expiry, missing image', async () => {
  const [download, named, url, missing, conflicting] = await Promise.all([
    t2i(['query', 'image', 'job-a', '3']),
    t2i(['query', 'image', 'job-a', '7', '1', '-o', path.join(tmp, 'seven.png')]),
    t2i(['query', 'image', 'job-a', '3', '--url', '--expires', '60']),
    t2i(['query', 'image', 'job-a', '3', '1']),
    t2i(['query', 'image', 'job-a', '3', '--url', '-o', 'x.png']),
  ]);
  const stored3 = (await store.get('jobs/job-a/images/000000003-0.png')) as Buffer;
  assert.equal(download.code, 0, download.stderr);
  assert.equal(download.stdout, 'job-a-000000003-0.png\n');
  assert.ok(fs.readFileSync(path.join(tmp, 'job-a-000000003-0.png')).equals(stored3));

  assert.equal(named.code, 0, named.stderr);
  assert.ok(fs.readFileSync(path.join(tmp, 'seven.png')).equals((await store.get('jobs/job-a/images/000000007-1.png')) as Buffer));

  assert.equal(url.code, 0, url.stderr);
  const signed = url.stdout.trim();
  assert.match(signed, /X-Amz-Expires=60/);
  assert.match(url.stderr, /valid 60 s \(until \d{4}-/);
  const res = await fetch(signed);
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(stored3));

  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /job job-a has no image for row 3, prompt 1/);
  assert.equal(conflicting.code, 1);
  assert.match(conflicting.stderr, /either --url or -o/);
});

test('t2i serve: API and gallery on a port, bearer token from T2I_QUERY_TOKEN, stops on SIGTERM', async () => {
  const child = spawn(process.execPath, [path.join(PACKAGE_ROOT, 'bin', 't2i.js'), 'serve', '--port', '0'], {
    cwd: tmp,
    env: { ...childEnv, T2I_QUERY_TOKEN: 'cli-token' },
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      const match = /gallery and API on (http:\/\/\S+)/.exec(stdout);
      if (match) resolve(match[1] as string);
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  try {
    assert.equal((await fetch(`${url}api/jobs`)).status, 401);
    const ok = await fetch(`${url}api/jobs`, { headers: { authorization: 'Bearer cli-token' } });
    assert.equal(ok.status, 200);
    assert.deepEqual(
      ((await ok.json()) as { jobs: { jobId: string }[] }).jobs.map((j) => j.jobId),
      ['job-a', 'job-b', 'job-c'],
    );
    assert.equal((await fetch(`${url}readyz`)).status, 200);
    assert.match(await (await fetch(url)).text(), /<title>t2i gallery<\/title>/);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await exited, 0, stderr);
});

test('t2i serve refuses a non-loopback interface without a token, unless --no-auth says so', async () => {
  const env = { ...childEnv, T2I_QUERY_TOKEN: '' };
  const refused = await t2i(['serve', '--host', '0.0.0.0', '--port', '0'], env);
  assert.equal(refused.code, 2, refused.stderr);
  assert.match(refused.stderr, /without a token .*T2I_QUERY_TOKEN.*--no-auth/s);
});
