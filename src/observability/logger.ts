import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines to stdout (the server) or stderr (one-shot CLI commands, whose stdout is their output). */
export function createLogger(level: string, stream: 'stdout' | 'stderr' = 'stdout'): Logger {
  return pino({
    level,
    base: { service: 'latchkey' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Defence in depth: even if a caller passes one of these, it never reaches the log.
    redact: {
      paths: ['password', '*.password', 'token', '*.token', 'secret', '*.secret', 'client_secret', '*.client_secret', 'req.headers.authorization', 'req.headers.cookie'],
      censor: '[redacted]',
    },
  }, pino.destination({ fd: stream === 'stdout' ? 1 : 2, sync: true }));
}
