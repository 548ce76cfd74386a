/** `t2i serve`: the query app on a node:http server, behind the service runtime (logger, health, metrics, SIGTERM). */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../common/config.ts';
import { T2iError } from '../common/errors.ts';
import { ObjectStore } from '../common/object-store.ts';
import { runService } from '../common/service-runtime.ts';
import { createQueryApp, type QueryApp } from './app.ts';

export interface QueryServerOptions {
  /** Port of the API and gallery; 0 picks a free one. Default 8080. */
  port?: number;
  /** Interface to bind. Default 127.0.0.1 (the gallery is for this machine unless asked otherwise). */
  host?: string;
  /** Bearer token; overrides config.queryToken (T2I_QUERY_TOKEN). */
  token?: string;
  /** Serve without a token on a non-loopback interface, on purpose (`--no-auth`). */
  anonymous?: boolean;
}

/** Whether a bind address is this machine only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export interface ListeningServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Serves an app on a port; close() stops accepting and ends open connections (idempotent). */
export async function listen(app: QueryApp, port: number, host: string): Promise<ListeningServer> {
  const server = http.createServer((req, res) => void app.handle(req, res));
  // Streams (NDJSON of a large job) may legitimately run long; only idle keep-alive sockets time out.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  let closing: Promise<void> | undefined;
  return {
    port: address.port,
    url: `http://${shownHost}:${address.port}/`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // In-flight streams get a moment to finish before their sockets are cut.
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      })),
  };
}

/** Runs the query service until SIGTERM/SIGINT; prints the gallery URL on stdout once listening. */
export async function runQueryServer(
  config: Config,
  options: QueryServerOptions = {},
): Promise<{ close: () => Promise<void>; url: string }> {
  let server: ListeningServer | undefined;
  const host = options.host ?? '127.0.0.1';
  const token = options.token ?? config.queryToken;
  if (!token && !options.anonymous && !isLoopback(host)) {
    throw new T2iError(
      'CONFIG_INVALID',
      `t2i serve --host ${host} without a token would serve every job's prompts and images to anyone who reaches this machine: set T2I_QUERY_TOKEN (or --token), or pass --no-auth to do it on purpose`,
    );
  }
  const runtime = await runService('t2i-query', config, async (ctx) => {
    const store = new ObjectStore(config.s3);
    ctx.lifecycle.onClose('object store', () => store.close());
    const app = createQueryApp({
      store,
      ...(token ? { token } : {}),
      logger: ctx.logger,
      registry: ctx.registry,
      isReady: () => ctx.lifecycle.getState() === 'RUNNING',
    });
    server = await listen(app, options.port ?? 8080, host);
    ctx.logger.info({ url: server.url, auth: token ? 'bearer' : 'none', bucket: store.bucket }, `query API and gallery on ${server.url}`);
    const listening = server;
    return { readiness: [], drain: () => listening.close() };
  });
  const url = (server as ListeningServer | undefined)?.url ?? '';
  process.stdout.write(`t2i serve: gallery and API on ${url} (bucket ${config.s3.bucket})\n`);
  return { close: runtime.close, url };
}
