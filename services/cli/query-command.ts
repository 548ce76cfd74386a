import fs from 'node:fs';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { T2iError } from '../common/errors.ts';
import { ObjectStore } from '../common/object-store.ts';
import { addConnectionOptions, configFromFlags, type ConnectionFlags } from './common-options.ts';
import { errorLines, jobHeader, jobLine, rowLines } from '../query/format.ts';
import { getJob, listJobs } from '../query/jobs.ts';
import { parseImageIndex, parseRowNumber, validateJobId } from '../query/layout.ts';
import { streamErrors, streamRows } from '../query/rows.ts';
import { imageKey } from '../common/bucket-layout.ts';

interface JobsFlags extends ConnectionFlags {
  limit?: string;
  json?: boolean;
}

interface RowsFlags extends ConnectionFlags {
  grep?: string;
  errors?: boolean;
  limit?: string;
  json?: boolean;
}

interface ImageFlags extends ConnectionFlags {
  output?: string;
  url?: boolean;
  expires?: string;
}

interface ServeFlags extends ConnectionFlags {
  port?: string;
  host?: string;
  token?: string;
  /** false with --no-auth. */
  auth?: boolean;
}

const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;

/** `t2i query jobs|rows|image` and `t2i serve`. */
export function registerQueryCommands(program: Command): void {
  const query = program.command('query').description('browse the output bucket: jobs, rows, images');

  addConnectionOptions(
    query
      .command('jobs')
      .description('jobs in the bucket with status (running/complete), counts, model and dates')
      .option('--limit <n>', 'show at most N jobs')
      .option('--json', 'one JSON object per job (JSONL)'),
  ).action((flags: JobsFlags) => withStore(flags, (store) => queryJobs(store, flags)));

  addConnectionOptions(
    query
      .command('rows')
      .description("stream a job's output rows (or its errors), optionally filtered by prompt text")
      .argument('<job>', 'job id')
      .option('--grep <text>', 'only rows with a prompt containing TEXT (case-insensitive)')
      .option('--errors', 'show errors.jsonl instead of the output rows')
      .option('--limit <n>', 'stop after N rows')
      .option('--json', 'print the rows as stored (JSONL)'),
  ).action((job: string, flags: RowsFlags) => withStore(flags, (store) => queryRows(store, job, flags)));

  addConnectionOptions(
    query
      .command('image')
      .description('fetch an image of a row (K = prompt index, default 0), or print a presigned URL')
      .argument('<job>', 'job id')
      .argument('<row>', 'input row number (1-based line of the input file)')
      .argument('[k]', 'prompt index within the row', '0')
      .option('-o, --output <file>', 'write the PNG to FILE ("-" for stdout); default ./<job>-<row>-<k>.png')
      .option('--url', 'print a presigned URL instead of downloading')
      .option('--expires <seconds>', 'life of the presigned URL in seconds (default 3600)'),
  ).action((job: string, row: string, k: string, flags: ImageFlags) => withStore(flags, (store) => queryImage(store, job, row, k, flags)));

  addConnectionOptions(
    program
      .command('serve')
      .description('HTTP API (JSON, NDJSON streams) and gallery page over the output bucket')
      .option('--port <port>', 'port to listen on (0 = any free port)', '8080')
      .option('--host <host>', 'interface to bind', '127.0.0.1')
      .option('--token <token>', 'require this bearer token on /api/ and /metrics (default T2I_QUERY_TOKEN)')
      .option('--no-auth', 'allow serving without a token on a non-loopback --host (anyone who reaches it can read every job)'),
  ).action(async (flags: ServeFlags) => {
    const port = Number(flags.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new T2iError('CONFIG_INVALID', `--port ${flags.port}: expected 0-65535`);
    const config = configFromFlags(flags);
    // Loaded here: the server's thumbnails bring sharp, which the other query commands do not need.
    const { runQueryServer } = await import('../query/server.ts');
    await runQueryServer(config, {
      port,
      ...(flags.host ? { host: flags.host } : {}),
      ...(flags.token ? { token: flags.token } : {}),
      anonymous: flags.auth === false,
    });
  });
}

async function withStore(flags: ConnectionFlags, run: (store: ObjectStore) => Promise<void>): Promise<void> {
  const store = new ObjectStore(configFromFlags(flags).s3);
  // A reader that goes away (`| head`) ends the command quietly.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  try {
    await run(store);
  } finally {
    store.close();
  }
}

function parseLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new T2iError('INPUT_INVALID', `--limit ${text}: expected a whole number from 1`);
  return Number(text);
}

/** Writes to stdout, waiting when its buffer is full (a million rows through a slow pipe stay bounded). */
async function out(text: string): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

async function queryJobs(store: ObjectStore, flags: JobsFlags): Promise<void> {
  const limit = parseLimit(flags.limit);
  let shown = 0;
  for await (const job of listJobs(store, Math.min(limit ?? 100, 100))) {
    if (!flags.json && shown === 0) await out(`${jobHeader()}\n`);
    await out(flags.json ? `${JSON.stringify(job)}\n` : `${jobLine(job)}\n`);
    if (++shown === limit) break;
  }
  if (shown === 0 && !flags.json) process.stderr.write(`no jobs under s3://${store.bucket}/jobs/\n`);
}

async function queryRows(store: ObjectStore, jobArg: string, flags: RowsFlags): Promise<void> {
  const jobId = validateJobId(jobArg);
  const limit = parseLimit(flags.limit);
  const filter = { ...(flags.grep ? { grep: flags.grep } : {}) };
  let shown = 0;
  if (flags.errors) {
    const errors = await streamErrors(store, jobId, filter);
    if (!errors) await explainMissing(store, jobId, 'errors.jsonl');
    for await (const { line, error } of errors ?? []) {
      await out(flags.json ? `${line.text}\n` : `${errorLines(error).join('\n')}\n`);
      if (++shown === limit) break;
    }
    process.stderr.write(
      `${shown} error record${shown === 1 ? '' : 's'}${flags.grep ? ` matching ${JSON.stringify(flags.grep)}` : ''} in job ${jobId}\n`,
    );
    return;
  }
  const rows = await streamRows(store, jobId, filter);
  if (!rows) return explainMissing(store, jobId, 'output.jsonl');
  let index = 0;
  for await (const { line, row } of rows) {
    await out(flags.json ? `${line.text}\n` : `${rowLines(row, index).join('\n')}\n`);
    index++;
    if (++shown === limit) break;
  }
  process.stderr.write(
    `${shown} row${shown === 1 ? '' : 's'}${flags.grep ? ` matching ${JSON.stringify(flags.grep)}` : ''} in job ${jobId}\n`,
  );
}

/** A missing output file: an unknown job, a running one (not written yet), or a complete job without errors. */
async function explainMissing(store: ObjectStore, jobId: string, file: 'output.jsonl' | 'errors.jsonl'): Promise<void> {
  const job = await getJob(store, jobId);
  if (!job) throw new T2iError('INPUT_INVALID', `no job ${jobId} in s3://${store.bucket}/jobs/`);
  if (job.status === 'running') {
    const images =
      job.counts.images === null || job.counts.images === undefined
        ? 'an unknown number of'
        : `${job.counts.images}${job.imagesCapped ? '+' : ''}`;
    throw new T2iError(
      'INPUT_INVALID',
      `job ${jobId} is still running: ${file} is written when it completes (${images} images so far; fetch them with \`t2i query image\`)`,
    );
  }
  if (file === 'errors.jsonl') return;
  throw new T2iError('INPUT_INVALID', `job ${jobId} is ${job.status} but has no output.jsonl`);
}

async function queryImage(store: ObjectStore, jobArg: string, rowArg: string, kArg: string, flags: ImageFlags): Promise<void> {
  const jobId = validateJobId(jobArg);
  const row = parseRowNumber(rowArg);
  const k = parseImageIndex(kArg);
  if (flags.url && flags.output) throw new T2iError('INPUT_INVALID', 'give either --url or -o FILE, not both');
  if (flags.expires !== undefined && !flags.url) throw new T2iError('INPUT_INVALID', '--expires goes with --url');
  const key = imageKey(jobId, row, k);
  const info = await store.head(key);
  if (!info) {
    const job = await getJob(store, jobId);
    throw new T2iError(
      'INPUT_INVALID',
      job ? `job ${jobId} has no image for row ${row}, prompt ${k} (${store.uri(key)})` : `no job ${jobId} in s3://${store.bucket}/jobs/`,
    );
  }
  if (flags.url) {
    const { parseExpires } = await import('../query/request.ts');
    const expires = parseExpires(flags.expires, MAX_PRESIGN_SECONDS);
    const url = await store.presignGet(key, expires);
    await out(`${url}\n`);
    process.stderr.write(
      `presigned URL for ${store.uri(key)}, valid ${expires} s (until ${new Date(Date.now() + expires * 1000).toISOString()})\n`,
    );
    return;
  }
  const body = await store.getStream(key);
  if (!body) throw new T2iError('INPUT_INVALID', `image ${store.uri(key)} disappeared`);
  if (flags.output === '-') {
    await pipeline(body, process.stdout, { end: false });
    return;
  }
  const file = flags.output ?? `${jobId}-${String(row).padStart(9, '0')}-${k}.png`;
  await pipeline(body, fs.createWriteStream(file));
  await out(`${file}\n`);
  process.stderr.write(`wrote ${info.size} bytes from ${store.uri(key)}\n`);
}
