/**
 * Copies a model directory from the bucket: every object under s3://bucket/prefix/ into DIR, keeping the layout.
 * For containers whose model lives in object storage (T2I_MODEL=s3://…): the worker pod's init container runs it,
 * and the image's entrypoint runs it before `worker` when T2I_MODEL is an s3:// URI (deploy/docker/entrypoint.sh).
 *
 * A second run keeps files whose size and ETag match what it fetched before (a restarted pod with a kept volume
 * downloads nothing). Downloads land in `<file>.part` and are renamed when complete, so a killed copy never leaves
 * a truncated model file behind. Credentials and endpoint: the usual S3_* / AWS_* variables (loadConfig).
 *
 *   node --import tsx deploy/docker/fetch-model.ts s3://bucket/models/flux1-schnell/ /models/flux
 */
import fs from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { loadConfig } from '../../services/common/config.ts';
import { describeError, T2iError } from '../../services/common/errors.ts';
import { ObjectStore, parseS3Uri } from '../../services/common/object-store.ts';

/** What the last fetch copied, by path relative to DIR: lets the next run skip unchanged files. */
export const STATE_FILE = '.t2i-fetch.json';

export interface FetchModelOptions {
  /** A store on the model's bucket. */
  store: ObjectStore;
  /** Key prefix of the model directory ("" for the whole bucket; a trailing "/" is added when missing). */
  prefix: string;
  /** Local directory; created when missing. */
  dir: string;
  /** Parallel downloads. Default 4. */
  concurrency?: number;
  onFile?: (file: string, action: 'downloaded' | 'kept') => void;
}

export interface FetchModelSummary {
  files: number;
  downloaded: number;
  kept: number;
  bytesDownloaded: number;
}

interface FetchedFile {
  size: number;
  etag?: string;
}

/**
 * The local path of an object key below the prefix, or an error for keys that would land outside DIR
 * ("..", absolute paths, backslashes): a bucket is not trusted to name files on this machine.
 */
export function localPathFor(dir: string, relativeKey: string): string {
  const segments = relativeKey.split('/');
  if (relativeKey === '' || relativeKey.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new T2iError('INPUT_INVALID', `model key ${JSON.stringify(relativeKey)}: not a plain relative path`);
  }
  const root = path.resolve(dir);
  const target = path.resolve(root, ...segments);
  if (!target.startsWith(root + path.sep)) throw new T2iError('INPUT_INVALID', `model key ${JSON.stringify(relativeKey)} leaves ${root}`);
  return target;
}

function readState(dir: string): Record<string, FetchedFile> {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as Record<string, FetchedFile>;
  } catch {
    return {};
  }
}

export async function fetchModel(options: FetchModelOptions): Promise<FetchModelSummary> {
  const prefix = options.prefix === '' || options.prefix.endsWith('/') ? options.prefix : `${options.prefix}/`;
  const dir = path.resolve(options.dir);
  fs.mkdirSync(dir, { recursive: true });
  const previous = readState(dir);
  const state: Record<string, FetchedFile> = {};
  const summary: FetchModelSummary = { files: 0, downloaded: 0, kept: 0, bytesDownloaded: 0 };

  // Listing is paged; downloads run `concurrency` at a time while the listing goes on.
  const running = new Set<Promise<void>>();
  const concurrency = options.concurrency ?? 4;
  for await (const object of options.store.list(prefix)) {
    const relative = object.key.slice(prefix.length);
    if (relative === '' || relative.endsWith('/')) continue; // "folder" markers some tools create
    const target = localPathFor(dir, relative);
    summary.files++;
    const known = previous[relative];
    const etag = object.etag;
    state[relative] = { size: object.size, ...(etag !== undefined ? { etag } : {}) };
    const onDisk = fs.statSync(target, { throwIfNoEntry: false });
    if (known && onDisk?.isFile() && onDisk.size === object.size && known.size === object.size && known.etag === etag) {
      summary.kept++;
      options.onFile?.(relative, 'kept');
      continue;
    }
    const task = (async () => {
      const body = await options.store.getStream(object.key);
      if (!body) throw new T2iError('INPUT_INVALID', `s3://${options.store.bucket}/${object.key} disappeared while copying the model`);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      const part = `${target}.part`;
      await pipeline(body, fs.createWriteStream(part));
      fs.renameSync(part, target);
      summary.downloaded++;
      summary.bytesDownloaded += object.size;
      options.onFile?.(relative, 'downloaded');
    })();
    running.add(task);
    void task.then(
      () => running.delete(task),
      () => running.delete(task),
    );
    if (running.size >= concurrency) await Promise.race(running);
  }
  await Promise.all(running);
  if (summary.files === 0) {
    throw new T2iError('CONFIG_INVALID', `no model files under s3://${options.store.bucket}/${prefix}: check T2I_MODEL and the bucket`);
  }
  fs.writeFileSync(path.join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  return summary;
}

async function main(argv: string[]): Promise<void> {
  const [uri, dir] = argv;
  const location = uri === undefined ? undefined : parseS3Uri(uri.endsWith('/') ? uri : `${uri}/`);
  if (!location || dir === undefined) {
    throw new T2iError('CONFIG_INVALID', 'usage: fetch-model s3://bucket/prefix/ DIR');
  }
  const config = loadConfig();
  const store = new ObjectStore({ ...config.s3, bucket: location.bucket });
  const started = Date.now();
  try {
    const summary = await fetchModel({ store, prefix: location.key, dir });
    process.stderr.write(
      `fetch-model: ${summary.files} files in ${dir} (${summary.downloaded} downloaded, ${(summary.bytesDownloaded / 1048576).toFixed(1)} MiB; ` +
        `${summary.kept} already there) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    );
  } finally {
    store.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`fetch-model: ${describeError(error)}\n`);
    process.exit(1);
  });
}
