/**
 * The query HTTP API and gallery page over the output bucket, as one handler (`handle(req, res)`) that a
 * node:http server, or a test, calls. Read-only except for the thumbnail cache under each job's prefix.
 *
 * GET /                                     gallery page (static HTML + JS from ./gallery, no build step)
 * GET /livez /readyz                       health (no token needed)
 * GET /metrics                              Prometheus metrics (the bearer token when one is set)
 * GET /api/jobs?limit=&cursor=              jobs with status and counts, paginated over ListObjectsV2
 * GET /api/jobs/:job                        one job (with its manifest)
 * GET /api/jobs/:job/rows?q=&limit=&cursor= output rows (cursor = byte offset into output.jsonl)
 * GET /api/jobs/:job/rows.ndjson?q=&limit=  the matching output lines as stored, streamed
 * GET /api/jobs/:job/rows/:row              the output row of input row :row
 * GET /api/jobs/:job/errors[.ndjson]?…      errors.jsonl, the same ways
 * GET /api/jobs/:job/images?limit=&cursor=  stored images (also for a running job)
 * GET /api/jobs/:job/images/:row/:k         the PNG; …/meta its generation metadata; …/url?expires= a presigned URL
 * GET /api/jobs/:job/thumbs/:row/:k         a WebP thumbnail (cached in the bucket)
 * GET /api/jobs/:job/files/<path>           any dataset file of the job (output.jsonl, manifest.json, images/…)
 *
 * With a token set, /api/ and /metrics need `Authorization: Bearer <token>` (or `?access_token=`, for
 * links made by hand; the gallery never puts the token in a URL, and logs show it as `***`).
 * Errors are JSON `{error: {code, message}}` with 400, 401, 404, 405 or 500; a 500 says only
 * "internal error" and a request id, the details (endpoint, bucket, cause) go to the log under that id.
 * Every response has `x-content-type-options: nosniff`.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { describeError } from '../common/errors.ts';
import type { ObjectStore } from '../common/object-store.ts';
import { getJob, listJobsPage } from './jobs.ts';
import { parseCursor } from './json-lines.ts';
import { jobFileKey, parseImageIndex, parseRowNumber, validateJobId } from './layout.ts';
import { readImageMetadata, thumbnail } from './images.ts';
import { QueryError, notFound } from './query-error.ts';
import { cursorParam, optionalLimit, parseExpires, parseLimit, parseRequest, type Request } from './request.ts';
import { findRow, readErrorsPage, readRowsPage, streamErrors, streamRows } from './rows.ts';
import { imageKey, imagesPrefix, jobPrefix } from '../common/bucket-layout.ts';

export interface QueryAppOptions {
  store: ObjectStore;
  /** Bearer token required on /api/ when set (T2I_QUERY_TOKEN or `t2i serve --token`). */
  token?: string;
  logger?: Logger;
  /** Registry served on /metrics; request counts are registered on it. */
  registry?: Registry;
  /** Readiness for /readyz. Default: always ready. */
  isReady?: () => boolean | Promise<boolean>;
  /** Longest side of thumbnails, pixels. Default 256. */
  thumbSize?: number;
  /** Bytes of output.jsonl one filtered page scans at most before answering with a cursor. Default 8 MiB. */
  maxScanBytes?: number;
  /** Longest presigned URL life allowed, seconds. Default 7 days (the S3 maximum). */
  maxPresignSeconds?: number;
}

export interface QueryApp {
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
}

const GALLERY_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'gallery');
const GALLERY_FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'gallery.js': 'text/javascript; charset=utf-8',
  'gallery.css': 'text/css; charset=utf-8',
};
const FILE_TYPES: Record<string, string> = {
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.json': 'application/json',
  '.jsonl': 'application/x-ndjson',
};
const DEFAULT_ROWS = 50;
const DEFAULT_JOBS = 100;

export function createQueryApp(options: QueryAppOptions): QueryApp {
  const { store } = options;
  const thumbSize = options.thumbSize ?? 256;
  const maxScanBytes = options.maxScanBytes ?? 8 * 1024 * 1024;
  const maxPresign = options.maxPresignSeconds ?? 7 * 24 * 3600;
  const tokenDigest = options.token ? sha256(options.token) : undefined;
  const requests = options.registry
    ? new Counter({
        name: 't2i_query_requests_total',
        help: 'HTTP requests by route and status',
        labelNames: ['route', 'status'],
        registers: [options.registry],
      })
    : undefined;
  const gallery = new Map(Object.keys(GALLERY_FILES).map((name) => [name, fs.readFileSync(path.join(GALLERY_DIR, name))]));

  function authorized(r: Request): boolean {
    if (!tokenDigest) return true;
    const header = r.req.headers.authorization ?? '';
    const match = /^Bearer\s+(.+)$/i.exec(header);
    const given = match?.[1]?.trim() ?? r.query.get('access_token') ?? '';
    return given !== '' && timingSafeEqual(sha256(given), tokenDigest);
  }

  /** Answers 404 unless something is stored under the job's prefix. */
  async function requireJob(jobId: string): Promise<void> {
    const page = await store.listPage(jobPrefix(jobId), { limit: 1 });
    if (page.objects.length === 0) throw notFound(`unknown job ${jobId}`);
  }

  async function route(r: Request): Promise<string> {
    const [first, second, jobParam, sub, ...rest] = r.segments;
    if (r.segments.length === 0) return serveGallery(r, 'index.html');
    if (first === 'gallery' && second !== undefined && r.segments.length === 2 && gallery.has(second)) return serveGallery(r, second);
    if (first === 'livez' && r.segments.length === 1) {
      sendJson(r.res, 200, { status: 'ok' });
      return 'livez';
    }
    if (first === 'readyz' && r.segments.length === 1) {
      const ready = options.isReady ? await options.isReady() : true;
      sendJson(r.res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready' });
      return 'readyz';
    }
    if (first === 'metrics' && r.segments.length === 1 && options.registry) {
      if (!authorized(r)) throw new QueryError('unauthorized', 'missing or wrong bearer token');
      r.res.writeHead(200, { 'content-type': options.registry.contentType });
      r.res.end(await options.registry.metrics());
      return 'metrics';
    }
    if (first !== 'api' || second !== 'jobs') throw notFound(`no such path; see /api/jobs`);
    if (!authorized(r)) throw new QueryError('unauthorized', 'missing or wrong bearer token');

    if (jobParam === undefined) {
      const page = await listJobsPage(store, { limit: parseLimit(r.query, DEFAULT_JOBS), ...cursorParam(r.query) });
      sendJson(r.res, 200, page);
      return 'jobs';
    }
    const jobId = validateJobId(jobParam);
    const grep = r.query.get('q') ?? undefined;

    if (sub === undefined) {
      const job = await getJob(store, jobId);
      if (!job) throw notFound(`unknown job ${jobId}`);
      sendJson(r.res, 200, job);
      return 'job';
    }
    if (sub === 'rows' && rest.length === 0) {
      const page = await readRowsPage(store, jobId, {
        offset: parseCursor(r.query.get('cursor') ?? undefined),
        limit: parseLimit(r.query, DEFAULT_ROWS),
        ...(grep ? { grep } : {}),
        maxScanBytes,
      });
      if (!page) throw await missingOutput(jobId);
      sendJson(r.res, 200, {
        jobId,
        rows: page.items,
        scannedBytes: page.scannedBytes,
        ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}),
      });
      return 'rows';
    }
    if (sub === 'rows.ndjson' && rest.length === 0) {
      const rows = await streamRows(store, jobId, { offset: parseCursor(r.query.get('cursor') ?? undefined), ...(grep ? { grep } : {}) });
      if (!rows) throw await missingOutput(jobId);
      await streamLines(r.res, rows, optionalLimit(r.query));
      return 'rows.ndjson';
    }
    if (sub === 'rows' && rest.length === 1) {
      const row = parseRowNumber(rest[0] as string);
      const found = await findRow(store, jobId, row);
      if (!found) {
        await requireJob(jobId);
        throw notFound(`job ${jobId} has no output row ${row}`);
      }
      sendJson(r.res, 200, { jobId, ...found });
      return 'row';
    }
    if (sub === 'errors' && rest.length === 0) {
      const page = await readErrorsPage(store, jobId, {
        offset: parseCursor(r.query.get('cursor') ?? undefined),
        limit: parseLimit(r.query, DEFAULT_ROWS),
        ...(grep ? { grep } : {}),
        maxScanBytes,
      });
      if (!page) await requireJob(jobId);
      sendJson(r.res, 200, {
        jobId,
        errors: page?.items ?? [],
        scannedBytes: page?.scannedBytes ?? 0,
        ...(page?.nextCursor ? { nextCursor: page.nextCursor } : {}),
      });
      return 'errors';
    }
    if (sub === 'errors.ndjson' && rest.length === 0) {
      const errors = await streamErrors(store, jobId, {
        offset: parseCursor(r.query.get('cursor') ?? undefined),
        ...(grep ? { grep } : {}),
      });
      if (!errors) await requireJob(jobId);
      await streamLines(r.res, errors ?? (async function* () {})(), optionalLimit(r.query));
      return 'errors.ndjson';
    }
    if (sub === 'images' && rest.length === 0) {
      const page = await store.listPage(imagesPrefix(jobId), { limit: parseLimit(r.query, DEFAULT_ROWS), ...cursorParam(r.query) });
      if (page.objects.length === 0 && !page.nextToken) await requireJob(jobId);
      const images = page.objects.flatMap((o) => {
        const match = /\/images\/(\d{9})-(\d+)\.png$/.exec(o.key);
        return match
          ? [
              {
                row: Number(match[1]),
                k: Number(match[2]),
                uri: store.uri(o.key),
                size: o.size,
                lastModified: o.lastModified?.toISOString(),
              },
            ]
          : [];
      });
      sendJson(r.res, 200, { jobId, images, ...(page.nextToken ? { nextCursor: page.nextToken } : {}) });
      return 'images';
    }
    if ((sub === 'images' || sub === 'thumbs') && (rest.length === 2 || (sub === 'images' && rest.length === 3))) {
      const row = parseRowNumber(rest[0] as string);
      const k = parseImageIndex(rest[1] as string);
      const key = imageKey(jobId, row, k);
      const what = rest[2];
      const missing = () => notFound(`job ${jobId} has no image ${row}/${k}`);
      if (sub === 'thumbs') {
        const thumb = await thumbnail(store, jobId, row, k, { size: thumbSize, ...(options.logger ? { logger: options.logger } : {}) });
        if (!thumb) throw missing();
        r.res.writeHead(200, { 'content-type': 'image/webp', 'content-length': thumb.length, 'cache-control': 'private, max-age=3600' });
        r.res.end(thumb);
        return 'thumb';
      }
      if (what === undefined) {
        if (!(await sendObject(r.res, key, 'image/png'))) throw missing();
        return 'image';
      }
      if (what === 'meta') {
        const meta = await readImageMetadata(store, key);
        if (!meta) throw missing();
        sendJson(r.res, 200, { jobId, row, k, uri: store.uri(key), meta });
        return 'image-meta';
      }
      if (what === 'url') {
        if (!(await store.head(key))) throw missing();
        const expires = parseExpires(r.query.get('expires') ?? undefined, maxPresign);
        const url = await store.presignGet(key, expires);
        sendJson(r.res, 200, { jobId, row, k, url, expiresIn: expires, expiresAt: new Date(Date.now() + expires * 1000).toISOString() });
        return 'image-url';
      }
    }
    if (sub === 'files') {
      const key = jobFileKey(jobId, rest);
      if (!(await sendObject(r.res, key, FILE_TYPES[path.extname(key)] ?? 'application/octet-stream')))
        throw notFound(`job ${jobId} has no file ${rest.join('/')}`);
      return 'file';
    }
    throw notFound('no such path; see /api/jobs');
  }

  async function missingOutput(jobId: string): Promise<QueryError> {
    const job = await getJob(store, jobId);
    if (!job) return notFound(`unknown job ${jobId}`);
    return notFound(`job ${jobId} has no output.jsonl yet (status ${job.status}); its images are listed at /api/jobs/${jobId}/images`);
  }

  async function sendObject(res: ServerResponse, key: string, contentType: string): Promise<boolean> {
    const info = await store.head(key);
    if (!info) return false;
    const body = await store.getStream(key);
    if (!body) return false;
    res.writeHead(200, { 'content-type': contentType, 'content-length': info.size, 'cache-control': 'private, max-age=3600' });
    await pipeline(body, res);
    return true;
  }

  function serveGallery(r: Request, name: string): string {
    r.res.writeHead(200, {
      'content-type': GALLERY_FILES[name] as string,
      'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'",
      'cache-control': 'no-cache',
    });
    r.res.end(gallery.get(name));
    return 'gallery';
  }

  return {
    async handle(req, res) {
      let routeName = 'unknown';
      res.setHeader('x-content-type-options', 'nosniff');
      try {
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.setHeader('allow', 'GET, HEAD');
          throw new QueryError('method_not_allowed', `${req.method} is not allowed: the query API is read-only`);
        }
        routeName = await route(parseRequest(req, res));
      } catch (error) {
        const status = error instanceof QueryError ? error.status : 500;
        const requestId = randomUUID();
        if (status === 500)
          options.logger?.error({ err: error, url: redactUrl(req.url), requestId }, `query request failed: ${describeError(error)}`);
        if (res.headersSent) {
          res.destroy(error instanceof Error ? error : undefined);
        } else {
          if (status === 401) res.setHeader('www-authenticate', 'Bearer');
          const code = error instanceof QueryError ? error.kind : 'internal';
          const message =
            status === 500 ? `internal error (request id ${requestId}; the query service's log has the details)` : (error as Error).message;
          sendJson(res, status, { error: { code, message } });
        }
      } finally {
        requests?.inc({ route: routeName, status: String(res.statusCode) });
      }
    },
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** Streams lines as NDJSON with backpressure; stops when the client goes away or after `limit` lines. */
async function streamLines(
  res: ServerResponse,
  source: AsyncGenerator<{ line: { text: string } }>,
  limit: number | undefined,
): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store' });
  let sent = 0;
  try {
    for await (const { line } of source) {
      if (res.destroyed) break;
      if (!res.write(`${line.text}\n`)) await Promise.race([once(res, 'drain'), once(res, 'close')]);
      if (limit !== undefined && ++sent >= limit) break;
    }
  } finally {
    await source.return(undefined);
  }
  res.end();
}

/** The request URL for a log line: the access_token query parameter's value replaced by `***`. */
export function redactUrl(url: string | undefined): string | undefined {
  return url?.replace(/([?&]access_token=)[^&#]*/gi, '$1***');
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
