/**
 * PutObject of an in-memory body to a configured S3-compatible endpoint (MinIO, s3proxy, Ceph …) on a
 * lean path: the SDK's own SigV4 signer with the S3Client's own credential provider and hash, and one keep-alive
 * HTTP request, without the SDK's ~30 middlewares. The worker makes one PUT per image, and through the
 * SDK each cost ~1 CPU-ms of client time against ~0.2 here (bench/e2e, 5 KB PNGs).
 *
 * Errors look like the SDK's (`name` = the S3 error code, `$metadata.httpStatusCode`), so ObjectStore
 * classifies them the same way (4xx: a fault to fix; 5xx, 429, network: transient). AWS itself (no
 * endpoint configured) keeps the SDK, with its endpoint rules for every partition and region.
 */
import http from 'node:http';
import https from 'node:https';
import { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider, ChecksumConstructor, HashConstructor } from '@smithy/types';

/** An S3 error response (or a network fault) in the shape of the SDK's service exceptions. */
export class S3PutError extends Error {
  readonly $metadata: { httpStatusCode?: number };
  /** The request failed on a reused keep-alive connection before any answer (the server had closed it). */
  staleConnection = false;
  constructor(name: string, message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = name;
    this.$metadata = { httpStatusCode: status };
  }
}

/** Path segments encoded as S3 expects in a URL and in the canonical request (`/` kept). */
export function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

export interface LeanPutOptions {
  endpoint: string;
  region: string;
  bucket: string;
  forcePathStyle: boolean;
  credentials: AwsCredentialIdentity | AwsCredentialIdentityProvider;
  /** The S3Client's own sha256 (node:crypto). */
  sha256: ChecksumConstructor | HashConstructor;
  /** Give up on a request that sends or receives nothing for this long. Default 120 s. */
  timeoutMs?: number;
}

export class LeanPut {
  private readonly signer: SignatureV4;
  private readonly base: URL;
  private readonly agent: http.Agent;
  private readonly transport: typeof http | typeof https;
  private readonly timeoutMs: number;

  constructor(private readonly options: LeanPutOptions) {
    this.signer = new SignatureV4({
      service: 's3',
      region: options.region,
      credentials: options.credentials,
      sha256: options.sha256,
      // S3 takes the path as sent: no second encoding in the canonical request.
      uriEscapePath: false,
      applyChecksum: true,
    });
    this.base = new URL(options.endpoint);
    this.transport = this.base.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: 50 });
    this.timeoutMs = options.timeoutMs ?? 120_000;
  }

  async put(key: string, body: Uint8Array, contentType: string, metadata?: Record<string, string>): Promise<void> {
    const pathStyle = this.options.forcePathStyle;
    const hostname = pathStyle ? this.base.hostname : `${this.options.bucket}.${this.base.hostname}`;
    const host = this.base.port ? `${hostname}:${this.base.port}` : hostname;
    const prefix = this.base.pathname.replace(/\/$/, '');
    const path = `${prefix}${pathStyle ? `/${this.options.bucket}` : ''}/${encodeKey(key)}`;
    const headers: Record<string, string> = { host, 'content-type': contentType, 'content-length': String(body.byteLength) };
    for (const [name, value] of Object.entries(metadata ?? {})) headers[`x-amz-meta-${name.toLowerCase()}`] = value;
    const signed = await this.signer.sign({
      method: 'PUT',
      protocol: this.base.protocol,
      hostname,
      port: Number(this.base.port) || undefined,
      path,
      headers,
      body,
      query: {},
    });
    try {
      await this.send(path, signed.headers, body);
    } catch (error) {
      // A keep-alive connection the server closed while idle fails at once on reuse: send again, once, on a new one.
      if (!(error instanceof S3PutError && error.staleConnection)) throw error;
      await this.send(path, signed.headers, body);
    }
  }

  private send(path: string, headers: Record<string, string>, body: Uint8Array): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let answered = false;
      const request = this.transport.request(
        {
          agent: this.agent,
          method: 'PUT',
          protocol: this.base.protocol,
          hostname: this.base.hostname,
          port: this.base.port || undefined,
          path,
          headers,
          timeout: this.timeoutMs,
        },
        (response) => {
          answered = true;
          const status = response.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            response.resume();
            response.on('end', resolve);
            response.on('error', (error) => reject(new S3PutError('NetworkError', error.message, undefined, { cause: error })));
            return;
          }
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', (error) => reject(new S3PutError('NetworkError', error.message, status, { cause: error })));
          response.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? `Http${status}`;
            const message = /<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? (response.statusMessage || `HTTP ${status}`);
            reject(new S3PutError(code, message, status));
          });
        },
      );
      request.on('timeout', () => request.destroy(new S3PutError('TimeoutError', `no response within ${this.timeoutMs} ms`)));
      request.on('error', (error) => {
        if (error instanceof S3PutError) return reject(error);
        const code = (error as NodeJS.ErrnoException).code ?? 'NetworkError';
        const failure = new S3PutError(code, error.message, undefined, { cause: error });
        failure.staleConnection = request.reusedSocket && !answered && (code === 'ECONNRESET' || code === 'EPIPE');
        reject(failure);
      });
      request.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
