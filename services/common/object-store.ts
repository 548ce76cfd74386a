import type { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { S3Config } from './config.ts';
import { T2iError } from './errors.ts';
import { LeanPut } from './s3-put.ts';

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified?: Date;
  etag?: string;
}

export interface ListPage {
  objects: ObjectInfo[];
  /** Common prefixes ("folders") when a delimiter was given. */
  prefixes: string[];
  /** Pass back to get the next page; undefined on the last page. */
  nextToken?: string;
}

/**
 * The bucket, as the services use it. One S3Client with the options every S3-compatible server accepts:
 * path-style addressing for custom endpoints and checksums only when required (the SDK's default CRC32
 * trailers are stored or rejected by some servers).
 */
export class ObjectStore {
  readonly client: S3Client;
  readonly bucket: string;
  private batchDelete = true;
  /** PutObject of in-memory bodies off the SDK's middleware stack (a configured endpoint only; see s3-put.ts). */
  private readonly leanPut: LeanPut | undefined;

  constructor(
    private readonly config: S3Config,
    client?: S3Client,
  ) {
    this.bucket = config.bucket;
    this.client = client ?? new S3Client(s3ClientConfig(config));
    this.leanPut =
      config.endpoint && !client
        ? new LeanPut({
            endpoint: config.endpoint,
            region: config.region,
            bucket: config.bucket,
            forcePathStyle: config.forcePathStyle,
            credentials: this.client.config.credentials,
            sha256: this.client.config.sha256,
          })
        : undefined;
  }

  /** The URI written into output rows: s3://bucket/key, or <public base>/<key>. */
  uri(key: string): string {
    return this.config.publicBaseUrl ? `${this.config.publicBaseUrl}/${key}` : `s3://${this.bucket}/${key}`;
  }

  /** Creates the bucket unless it exists. */
  async ensureBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (error) {
      const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status !== 404 && status !== 403 && (error as Error).name !== 'NotFound') throw this.wrap('head bucket', error);
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      if (!/BucketAlreadyOwnedByYou|BucketAlreadyExists/.test((error as Error).name)) throw this.wrap('create bucket', error);
    }
  }

  async put(
    key: string,
    body: Uint8Array | string,
    contentType = 'application/octet-stream',
    metadata?: Record<string, string>,
  ): Promise<void> {
    try {
      if (this.leanPut) return await this.leanPut.put(key, typeof body === 'string' ? Buffer.from(body) : body, contentType, metadata);
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: body,
          ContentType: contentType,
          ...(metadata ? { Metadata: metadata } : {}),
        }),
      );
    } catch (error) {
      throw this.wrap(`put ${key}`, error);
    }
  }

  /** Streams a body of unknown length (multipart above 8 MiB parts), e.g. output.jsonl of a large job. */
  async putStream(key: string, body: Readable, contentType = 'application/octet-stream'): Promise<void> {
    try {
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key: key, Body: body, ContentType: contentType },
        partSize: 8 * 1024 * 1024,
        queueSize: 2,
      });
      await upload.done();
    } catch (error) {
      throw this.wrap(`upload ${key}`, error);
    }
  }

  /** The object's bytes, or undefined when it does not exist. */
  async get(key: string): Promise<Buffer | undefined> {
    const stream = await this.getStream(key);
    if (!stream) return undefined;
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** A readable stream of the object (optionally a byte range), or undefined when it does not exist. */
  async getStream(key: string, range?: { start: number; end?: number }): Promise<Readable | undefined> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}) }),
      );
      return out.Body as Readable;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.wrap(`get ${key}`, error);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return {
        key,
        size: out.ContentLength ?? 0,
        ...(out.LastModified ? { lastModified: out.LastModified } : {}),
        ...(out.ETag ? { etag: out.ETag } : {}),
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.wrap(`head ${key}`, error);
    }
  }

  /** One page of ListObjectsV2 (at most `limit` keys, 1000 max). */
  async listPage(
    prefix: string,
    options: { delimiter?: string; token?: string; limit?: number; startAfter?: string } = {},
  ): Promise<ListPage> {
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: prefix,
          MaxKeys: Math.min(1000, options.limit ?? 1000),
          ...(options.delimiter ? { Delimiter: options.delimiter } : {}),
          ...(options.token ? { ContinuationToken: options.token } : {}),
          ...(options.startAfter ? { StartAfter: options.startAfter } : {}),
        }),
      );
      return {
        objects: (out.Contents ?? []).map((o) => ({
          key: o.Key ?? '',
          size: o.Size ?? 0,
          ...(o.LastModified ? { lastModified: o.LastModified } : {}),
          ...(o.ETag ? { etag: o.ETag } : {}),
        })),
        prefixes: (out.CommonPrefixes ?? []).map((p) => p.Prefix ?? '').filter(Boolean),
        ...(out.IsTruncated && out.NextContinuationToken ? { nextToken: out.NextContinuationToken } : {}),
      };
    } catch (error) {
      throw this.wrap(`list ${prefix}`, error);
    }
  }

  /** Every object under a prefix, page by page (never all keys in memory at once). */
  async *list(prefix: string): AsyncGenerator<ObjectInfo> {
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, token ? { token } : {});
      yield* page.objects;
      token = page.nextToken;
    } while (token);
  }

  /** Deletes one object (no error when it does not exist, as S3 answers). */
  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      throw this.wrap(`delete ${key}`, error);
    }
  }

  /**
   * Deletes every object under a prefix. Uses DeleteObjects (1000 keys a request) where the server supports
   * it, else one DeleteObject per key, 8 at a time (s3proxy answers DeleteObjects with 501 NotImplemented).
   */
  async deletePrefix(prefix: string): Promise<number> {
    let deleted = 0;
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const keys = batch;
      batch = [];
      if (this.batchDelete) {
        try {
          await this.client.send(
            new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true } }),
          );
          deleted += keys.length;
          return;
        } catch (error) {
          if (
            (error as Error).name !== 'NotImplemented' &&
            (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode !== 501
          )
            throw error;
          this.batchDelete = false;
        }
      }
      for (let i = 0; i < keys.length; i += 8) {
        await Promise.all(keys.slice(i, i + 8).map((Key) => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }))));
      }
      deleted += keys.length;
    };
    try {
      for await (const object of this.list(prefix)) {
        batch.push(object.key);
        if (batch.length === 1000) await flush();
      }
      await flush();
    } catch (error) {
      throw this.wrap(`delete ${prefix}`, error);
    }
    return deleted;
  }

  /** Deletes the (empty) bucket itself. */
  async deleteBucket(): Promise<void> {
    try {
      await this.client.send(new DeleteBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      if (!isNotFound(error)) throw this.wrap('delete bucket', error);
    }
  }

  /** A presigned GET URL valid for `expiresInSeconds`. */
  async presignGet(key: string, expiresInSeconds = 3600): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: key }), { expiresIn: expiresInSeconds });
  }

  close(): void {
    this.leanPut?.close();
    this.client.destroy();
  }

  private wrap(action: string, error: unknown): T2iError {
    if (error instanceof T2iError) return error;
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    const name = (error as Error).name;
    // Access or request errors (4xx) will not heal by waiting; everything else (refused, reset, 5xx) might.
    const retriable = status === undefined || status >= 500 || status === 429 || name === 'TimeoutError';
    return new T2iError(
      'S3_UNAVAILABLE',
      `S3 ${action} failed at ${this.config.endpoint ?? 'AWS'} (bucket ${this.bucket}): ${name} ${(error as Error).message}`,
      {
        retriable,
        cause: error,
      },
    );
  }
}

/**
 * The S3Client options every S3-compatible server accepts: path-style addressing for custom endpoints
 * and checksums only when required (the SDK's default CRC32 trailers are stored or rejected by some servers).
 */
export function s3ClientConfig(config: S3Config): S3ClientConfig {
  return {
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    ...(config.accessKeyId !== undefined && config.secretAccessKey !== undefined
      ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } }
      : {}),
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
    ...(config.endpoint ? { endpoint: config.endpoint } : {}),
  };
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchKey' || e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404;
}

/** Parses s3://bucket/key. */
export function parseS3Uri(uri: string): { bucket: string; key: string } | undefined {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  return match ? { bucket: match[1] as string, key: match[2] as string } : undefined;
}
