import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import { type Config } from './config.ts';
import { describeError } from './errors.ts';
import { createMetricsRegistry, startHealthServer, type ReadinessCheck } from './health-server.ts';
import { Lifecycle, handleSignals } from './lifecycle.ts';
import { createLogger } from './logger.ts';
import { initTelemetry } from './telemetry.ts';

/** What a long-running service gives its runtime once it has started. */
export interface RunningService {
  /** Readiness checks for /readyz (model loaded, group joined…). */
  readiness: ReadinessCheck[];
  /** Graceful stop: stop fetching, finish in-flight work, commit, leave the group. */
  drain: () => Promise<void>;
  /** Resolves when the service ends on its own (e.g. a fatal error); rejects to fail the process. */
  done?: Promise<void>;
}

export interface ServiceContext {
  config: Config;
  logger: Logger;
  registry: Registry;
  lifecycle: Lifecycle;
}

/**
 * The runtime every service runs behind: logger, telemetry, metrics registry, health server
 * (/livez /readyz /metrics), lifecycle state machine, and the one SIGTERM handler. The service itself is
 * a factory that starts its handler and returns how to drain it.
 */
export async function runService(
  name: string,
  config: Config,
  start: (ctx: ServiceContext) => Promise<RunningService>,
  options: { graceMs?: number; installSignalHandlers?: boolean } = {},
): Promise<{ close: () => Promise<void>; port: number; ctx: ServiceContext }> {
  const logger = createLogger(name, config.logLevel);
  const telemetry = await initTelemetry(name);
  const registry = createMetricsRegistry(name);
  const lifecycle = new Lifecycle(logger);
  lifecycle.transition('STARTING');
  const ctx: ServiceContext = { config, logger, registry, lifecycle };
  let running: RunningService | undefined;
  const readiness: ReadinessCheck[] = [
    { name: 'running', check: () => lifecycle.getState() === 'RUNNING' },
    { name: 'service', check: async () => (running ? (await Promise.all(running.readiness.map((r) => r.check()))).every(Boolean) : false) },
  ];
  const health = await startHealthServer({ port: config.httpPort, registry, readiness, isLive: () => lifecycle.getState() !== 'FAILED' });
  lifecycle.onClose('telemetry', () => telemetry.shutdown());
  lifecycle.onClose('health server', () => health.close());
  logger.info({ port: health.port }, `${name}: health server on :${health.port} (/livez /readyz /metrics)`);
  const close = () => lifecycle.close(async () => running?.drain());
  if (options.installSignalHandlers !== false) handleSignals(close, logger, options.graceMs);
  if (config.parentPid !== undefined) {
    // Started by `t2i run`: if it is gone (even SIGKILLed, which it cannot pass on), stop too rather than
    // run on as an orphan still working its job.
    const parentPid = config.parentPid;
    const watch = setInterval(() => {
      if (process.ppid === parentPid) return;
      clearInterval(watch);
      logger.warn({ parentPid }, `${name}: the t2i run that started this service is gone: stopping`);
      void close().finally(() => process.exit(process.exitCode ?? 0));
    }, 1000);
    watch.unref();
    lifecycle.onClose('parent watch', () => clearInterval(watch));
  }
  try {
    running = await start(ctx);
  } catch (error) {
    logger.error({ err: error }, `${name} failed to start: ${describeError(error)}`);
    lifecycle.transition('FAILED');
    await close();
    throw error;
  }
  lifecycle.transition('RUNNING');
  logger.info(`${name}: running (SIGTERM drains and stops it)`);
  running.done?.then(
    () => void close(),
    (error: unknown) => {
      logger.error({ err: error }, `${name} failed: ${describeError(error)}`);
      process.exitCode = 1;
      if (lifecycle.getState() === 'RUNNING') lifecycle.transition('FAILED');
      void close();
    },
  );
  return { close, port: health.port, ctx };
}
