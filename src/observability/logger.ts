import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines to stdout (the server) or stderr (one-shot CLI commands, whose stdout is their output).
 * The server's lines are written asynchronously: a synchronous write per line blocked the event loop
 * for a sixth of each token request's CPU. Lines queued while a write is in flight go out together,
 * and whatever is queued at exit is flushed synchronously (pino registers that), so none is lost on
 * a clean shutdown; a CLI command writes synchronously, its few lines in order with its output.
 */
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
  }, pino.destination({ fd: stream === 'stdout' ? 1 : 2, sync: stream === 'stderr' }));
}
