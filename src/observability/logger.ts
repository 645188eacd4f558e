import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'latchkey' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // Defence in depth: even if a caller passes one of these, it never reaches the log.
    redact: {
      paths: ['password', '*.password', 'token', '*.token', 'secret', '*.secret', 'client_secret', '*.client_secret', 'req.headers.authorization', 'req.headers.cookie'],
      censor: '[redacted]',
    },
  });
}
