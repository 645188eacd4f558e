import type { Middleware } from 'koa';
import client from 'prom-client';
import { constantTimeEqual } from '../security/crypto.ts';

export function createMetrics() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const httpRequests = new client.Counter({
    name: 'latchkey_http_requests_total',
    help: 'HTTP requests by route, method and status',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new client.Histogram({
    name: 'latchkey_http_request_duration_seconds',
    help: 'HTTP request latency by route',
    labelNames: ['route', 'method'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const tokensIssued = new client.Counter({
    name: 'latchkey_tokens_issued_total',
    help: 'Successful token endpoint responses by grant type',
    labelNames: ['grant_type'] as const,
    registers: [registry],
  });
  const loginAttempts = new client.Counter({
    name: 'latchkey_login_attempts_total',
    help: 'Sign-in attempts by method and result',
    labelNames: ['method', 'result'] as const,
    registers: [registry],
  });
  return { registry, httpRequests, httpDuration, tokensIssued, loginAttempts };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * GET /metrics in Prometheus format. With a token (METRICS_TOKEN) only a scraper sending
 * `Authorization: Bearer <token>` is served: the counters tell an outsider how sign-ins go.
 */
export function metricsEndpoint(metrics: Metrics, token: string | undefined): Middleware {
  return async (ctx) => {
    if (token) {
      const sent = /^Bearer +(\S+)\s*$/i.exec(ctx.get('authorization'))?.[1];
      if (!sent || !constantTimeEqual(sent, token)) {
        // RFC 6750 §3: no error code when no token was sent, invalid_token when a wrong one was.
        ctx.set('WWW-Authenticate', sent ? 'Bearer realm="metrics", error="invalid_token"' : 'Bearer realm="metrics"');
        ctx.status = 401;
        ctx.body = { error: 'invalid_token', error_description: 'A bearer token is required for /metrics.' };
        return;
      }
    }
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  };
}
