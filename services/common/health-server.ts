import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';

export interface ReadinessCheck {
  name: string;
  /** True when this part is ready (model loaded, group joined…). */
  check: () => boolean | Promise<boolean>;
}

export interface HealthServerOptions {
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Interface to bind. Default 0.0.0.0 (probes come from the kubelet). */
  host?: string;
  registry: Registry;
  readiness: ReadinessCheck[];
  /** False once the service is draining: /readyz answers 503 so traffic goes elsewhere. */
  isLive?: () => boolean;
}

export interface HealthServer {
  readonly port: number;
  close(): Promise<void>;
}

/** A metrics registry with the process's default metrics, one per service. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** /livez (the process answers), /readyz (every readiness check passes), /metrics (Prometheus text). */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    void (async () => {
      const url = (req.url ?? '/').split('?')[0];
      try {
        if (url === '/livez') {
          const live = options.isLive?.() ?? true;
          send(res, live ? 200 : 503, { status: live ? 'ok' : 'down' });
        } else if (url === '/readyz') {
          const results = await Promise.all(
            options.readiness.map(async (r) => ({ name: r.name, ready: await Promise.resolve(r.check()).catch(() => false) })),
          );
          const ready = results.every((r) => r.ready);
          send(res, ready ? 200 : 503, {
            status: ready ? 'ready' : 'not ready',
            checks: Object.fromEntries(results.map((r) => [r.name, r.ready])),
          });
        } else if (url === '/metrics') {
          const body = await options.registry.metrics();
          res.writeHead(200, { 'content-type': options.registry.contentType });
          res.end(body);
        } else {
          send(res, 404, { error: 'not found', paths: ['/livez', '/readyz', '/metrics'] });
        }
      } catch (error) {
        send(res, 500, { error: String(error) });
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '0.0.0.0', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
