/**
 * The one error type of t2i-stream. A closed set of codes; `retriable` says whether waiting and trying
 * again can help (a broker or S3 outage) or not (bad input, a bad model): retriable errors back off,
 * the others dead-letter or stop the command with their message.
 */
export const ERROR_CODES = [
  'CONFIG_INVALID',
  'INPUT_INVALID',
  'KAFKA_UNAVAILABLE',
  'S3_UNAVAILABLE',
  'SCHEMA_UNKNOWN',
  'STACK_FAILED',
  'JOB_FAILED',
  'TIMEOUT',
  'CLOSED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface T2iErrorOptions {
  retriable?: boolean;
  cause?: unknown;
}

export class T2iError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;

  constructor(code: ErrorCode, message: string, options: T2iErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'T2iError';
    this.code = code;
    this.retriable = options.retriable ?? false;
  }
}

/** True for errors worth retrying: our own retriable ones and network-level failures of the clients. */
export function isRetriable(error: unknown): boolean {
  if (error instanceof T2iError) return error.retriable;
  if (!(error instanceof Error)) return false;
  const anyError = error as Error & { retriable?: boolean; code?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } };
  if (anyError.retriable === true) return true;
  if (anyError.$retryable) return true;
  const status = anyError.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  const code = anyError.code ?? '';
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT'].includes(
      code,
    ) ||
    /ECONNREFUSED|ECONNRESET|socket hang up|Connection error|KafkaJSConnectionError|KafkaJSNumberOfRetriesExceeded|TimeoutError/i.test(
      `${error.name} ${error.message}`,
    )
  );
}

/**
 * Whether a Kafka error `type` (kafkajs's broker error name, e.g. MESSAGE_TOO_LARGE) is one of `types`,
 * on the error or anywhere in its cause chain (kafkajs wraps broker errors in retry and producer errors).
 */
export function hasErrorType(error: unknown, types: ReadonlySet<string>): boolean {
  let current = error as { type?: unknown; cause?: unknown } | null | undefined;
  for (let depth = 0; current && depth < 5; depth++) {
    if (typeof current.type === 'string' && types.has(current.type)) return true;
    current = current.cause as typeof current;
  }
  return false;
}

/** A one-line description of an error and its causes, for logs and CLI messages. */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof Error) {
      parts.push(current.message || current.name);
      current = (current as Error & { cause?: unknown }).cause;
    } else {
      parts.push(String(current));
      break;
    }
  }
  return [...new Set(parts)].join(': ');
}
