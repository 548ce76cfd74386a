import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured JSON logs (pino) to stderr, so stdout stays free for command output (URIs, JSON rows).
 * Secrets are redacted by path wherever they could appear.
 */
export function createLogger(
  name: string,
  level: LoggerOptions['level'] = 'info',
  destination: NodeJS.WritableStream = process.stderr,
): Logger {
  return pino(
    {
      name,
      level,
      base: { service: name, pid: process.pid },
      redact: {
        paths: [
          'password',
          'secretAccessKey',
          '*.password',
          '*.secretAccessKey',
          '*.*.password',
          '*.*.secretAccessKey',
          'authorization',
          '*.authorization',
        ],
        censor: '***',
      },
    },
    pino.destination({ dest: (destination as { fd?: number }).fd ?? 2, sync: true }),
  );
}

/** A logger that drops everything, for tests and library use without logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
