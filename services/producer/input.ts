import fs from 'node:fs';
import type { Readable } from 'node:stream';
import type { Config } from '../common/config.ts';
import { T2iError } from '../common/errors.ts';

export interface OpenedInput {
  stream: Readable;
  /** What the job's `source` says: the path, `stdin` or the s3 URI. */
  source: string;
  /** Size in bytes when known (files and objects). */
  totalBytes: number | undefined;
  /** Releases what opening took (the S3 client). */
  close: () => void;
}

/** Reads of 256 KiB: few enough chunks for little per-chunk overhead, small enough to keep memory low. */
const FILE_CHUNK_BYTES = 256 * 1024;

/**
 * Opens the input as a byte stream, never reading it whole: a file (streamed in 256 KiB chunks), `-`
 * (stdin), or `s3://bucket/key` (streamed from the object store configured in `config.s3`, with that
 * bucket). A missing file or object is an INPUT_INVALID error that names it.
 */
export async function openInput(
  input: string | Readable,
  config: Config,
  options: { sourceName?: string; totalBytes?: number } = {},
): Promise<OpenedInput> {
  const noop = () => {};
  if (typeof input !== 'string') {
    return { stream: input, source: options.sourceName ?? 'stream', totalBytes: options.totalBytes, close: noop };
  }
  if (input === '-') {
    return { stream: process.stdin, source: 'stdin', totalBytes: options.totalBytes, close: noop };
  }
  if (input.startsWith('s3://')) {
    // Loaded only for S3 inputs: the AWS SDK is the biggest module of the process (memory, start time).
    const { ObjectStore, parseS3Uri } = await import('../common/object-store.ts');
    const location = parseS3Uri(input);
    if (!location) throw new T2iError('INPUT_INVALID', `${input}: expected s3://bucket/key`);
    const store = new ObjectStore({ ...config.s3, bucket: location.bucket });
    try {
      const info = await store.head(location.key);
      if (!info)
        throw new T2iError(
          'INPUT_INVALID',
          `${input}: no such object (bucket ${location.bucket}, endpoint ${config.s3.endpoint ?? 'AWS'})`,
        );
      const stream = await store.getStream(location.key);
      if (!stream) throw new T2iError('INPUT_INVALID', `${input}: no such object`);
      return { stream, source: input, totalBytes: info.size, close: () => store.close() };
    } catch (error) {
      store.close();
      throw error;
    }
  }
  let size: number;
  try {
    const stat = await fs.promises.stat(input);
    if (!stat.isFile()) throw new T2iError('INPUT_INVALID', `${input}: not a file`);
    size = stat.size;
  } catch (error) {
    if (error instanceof T2iError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw new T2iError(
      'INPUT_INVALID',
      code === 'ENOENT' ? `${input}: no such file` : `${input}: cannot read (${code ?? (error as Error).message})`,
      { cause: error },
    );
  }
  return { stream: fs.createReadStream(input, { highWaterMark: FILE_CHUNK_BYTES }), source: input, totalBytes: size, close: noop };
}
