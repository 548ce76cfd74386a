import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured JSON logs (pino) to stderr, so stdout stays free for command output (URIs, JSON rows), or
 * appended to a file when `file` is given (`t2i run` keeps the terminal for people). Secrets are redacted
 * by path wherever they could appear.
 */
export function createLogger(name: string, level: LoggerOptions['level'] = 'info', file?: string): Logger {
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
    pino.destination({ dest: file ?? 2, sync: true, ...(file ? { append: true, mkdir: true } : {}) }),
  );
}

/** A logger that drops everything, for tests and library use without logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
