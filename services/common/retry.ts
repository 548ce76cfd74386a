import { setTimeout as sleep } from 'node:timers/promises';
import { isRetriable } from './errors.ts';

/** Backoff policy. Durations in milliseconds. */
export interface BackoffOptions {
  /** Delay before the first retry. Default 200 ms. */
  initialMs?: number;
  /** Upper bound of any delay. Default 10 000 ms. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Fraction of each delay that is randomised (0..1, "equal jitter"). Default 0.5. */
  jitter?: number;
}

/**
 * Delay before retry number `attempt` (1-based): exponential growth capped at maxMs, with part of it
 * randomised so that many clients recovering from one outage do not retry in lockstep. Pure given `random`.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initialMs = options.initialMs ?? 200;
  const maxMs = options.maxMs ?? 10_000;
  const factor = options.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.5));
  const base = Math.min(maxMs, initialMs * factor ** Math.max(0, attempt - 1));
  return Math.round(base * (1 - jitter) + base * jitter * random());
}

export interface RetryOptions extends BackoffOptions {
  /** Attempts in all, the first included. Default Infinity: transient failures are waited out. */
  attempts?: number;
  /** Which errors are worth another attempt. Default: isRetriable. */
  retryOn?: (error: unknown) => boolean;
  /** Called before each wait, e.g. to log "S3 unavailable, retrying in 800 ms". */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Stops waiting (rejects with the last error) when aborted. */
  signal?: AbortSignal;
}

/** Runs `operation` until it succeeds, it fails with a non-retriable error, attempts run out, or `signal` aborts. */
export async function retry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const attempts = options.attempts ?? Number.POSITIVE_INFINITY;
  const retryOn = options.retryOn ?? isRetriable;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (attempt >= attempts || !retryOn(error) || options.signal?.aborted) throw error;
      const delayMs = backoffDelay(attempt, options);
      options.onRetry?.(error, attempt, delayMs);
      try {
        await sleep(delayMs, undefined, options.signal ? { signal: options.signal } : undefined);
      } catch {
        throw error;
      }
    }
  }
}
