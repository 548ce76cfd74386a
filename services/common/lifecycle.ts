import type { Logger } from 'pino';
import { describeError } from './errors.ts';

export type LifecycleState = 'CREATED' | 'STARTING' | 'RUNNING' | 'DRAINING' | 'STOPPED' | 'FAILED';

const NEXT: Record<LifecycleState, readonly LifecycleState[]> = {
  CREATED: ['STARTING', 'STOPPED'],
  STARTING: ['RUNNING', 'DRAINING', 'FAILED'],
  RUNNING: ['DRAINING', 'FAILED'],
  DRAINING: ['STOPPED', 'FAILED'],
  STOPPED: [],
  FAILED: ['STOPPED'],
};

/**
 * The explicit state machine of a service: CREATED → STARTING → RUNNING → DRAINING → STOPPED (or FAILED).
 * close() is idempotent: a second call returns the first call's promise. Cleanup steps run in order,
 * each in its own try/catch so one failing step does not skip the rest.
 */
export class Lifecycle {
  private state: LifecycleState = 'CREATED';
  private closing: Promise<void> | undefined;
  private readonly cleanups: { name: string; run: () => Promise<void> | void }[] = [];

  constructor(private readonly logger?: Logger) {}

  getState(): LifecycleState {
    return this.state;
  }

  transition(next: LifecycleState): void {
    if (this.state === next) return;
    if (!NEXT[this.state].includes(next)) throw new Error(`invalid lifecycle transition ${this.state} -> ${next}`);
    this.state = next;
  }

  /** Registers a cleanup step; steps run in reverse order of registration (last opened, first closed). */
  onClose(name: string, run: () => Promise<void> | void): void {
    this.cleanups.unshift({ name, run });
  }

  /** Drains: runs `drain` (e.g. finish the in-flight batch), then every cleanup step. */
  close(drain?: () => Promise<void>): Promise<void> {
    this.closing ??= (async () => {
      if (this.state === 'CREATED') {
        this.transition('STOPPED');
        return;
      }
      if (this.state !== 'FAILED') this.transition('DRAINING');
      if (drain) {
        try {
          await drain();
        } catch (error) {
          this.logger?.error({ err: error }, `drain failed: ${describeError(error)}`);
        }
      }
      for (const step of this.cleanups) {
        try {
          await step.run();
        } catch (error) {
          this.logger?.warn({ err: error }, `cleanup step ${step.name} failed: ${describeError(error)}`);
        }
      }
      this.transition('STOPPED');
    })();
    return this.closing;
  }
}

/**
 * Runs a long-lived service from a process entry point: the only place that handles signals.
 * The first SIGTERM/SIGINT starts a graceful close; a second one exits at once. Once the close is done
 * the process exits even if a library still holds a socket or a timer (kafkajs restarting a consumer
 * whose broker came back, for one): a drained service never lingers.
 */
export function handleSignals(close: () => Promise<void>, logger: Logger, graceMs = 60_000): void {
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    signalled = true;
    logger.info({ signal }, 'signal received: draining');
    const timer = setTimeout(() => {
      logger.error({ graceMs }, 'grace period over: exiting');
      process.exit(1);
    }, graceMs);
    timer.unref();
    close().then(
      () => {
        clearTimeout(timer);
        process.exitCode ??= 0;
        // Normally the event loop is empty now and the process ends by itself; if not, end it.
        setTimeout(() => {
          logger.warn('drained, but handles are still open (a library reconnecting?): exiting');
          process.exit(process.exitCode ?? 0);
        }, 1000).unref();
      },
      (error: unknown) => {
        logger.error({ err: error }, 'close failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}
