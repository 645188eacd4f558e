// Per-request plumbing: request id, access log, metrics, and turning errors into pages or JSON.
import crypto from 'node:crypto';
import type { Context, Middleware } from 'koa';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Views } from './views.ts';

const REQUEST_ID_RE = /^[A-Za-z0-9._-]{8,64}$/;

function routeLabel(ctx: Context): string {
  const oidcRoute = (ctx as Context & { oidc?: { route?: string } }).oidc?.route;
  return (ctx as Context & { _matchedRoute?: string })._matchedRoute ?? (oidcRoute ? `oidc:${oidcRoute}` : ctx.status === 404 ? 'not_found' : 'other');
}

export function requestContext(log: Logger, metrics: Metrics, trustProxy: boolean): Middleware {
  return async (ctx, next) => {
    const incoming = ctx.get('x-request-id');
    const requestId = trustProxy && REQUEST_ID_RE.test(incoming) ? incoming : crypto.randomUUID();
    ctx.state.requestId = requestId;
    ctx.state.log = log.child({ requestId });
    ctx.set('X-Request-Id', requestId);
    const started = process.hrtime.bigint();
    try {
      await next();
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeLabel(ctx);
      metrics.httpRequests.inc({ route, method: ctx.method, status: String(ctx.status) });
      metrics.httpDuration.observe({ route, method: ctx.method }, seconds);
      ctx.state.log.info(
        { event: 'http.request', method: ctx.method, path: ctx.path, route, status: ctx.status, ms: Math.round(seconds * 1000) },
        'request',
      );
    }
  };
}

export function wantsJson(ctx: Context): boolean {
  return ctx.path.startsWith('/api/') || Boolean(ctx.is('application/json')) || ctx.accepts('html', 'json') === 'json';
}

const CODES: Record<number, string> = {
  400: 'invalid_request',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  413: 'request_too_large',
  415: 'unsupported_media_type',
  429: 'too_many_requests',
};

const HEADINGS: Record<number, string> = {
  400: 'That request could not be understood',
  403: 'This request was refused',
  404: 'Page not found',
  405: 'That action is not allowed here',
  413: 'That request was too large',
  429: 'Too many attempts',
};

/** Errors become a rendered page for people and `{error, error_description}` for programs. */
export function errorHandler(views: Views): Middleware {
  return async (ctx, next) => {
    try {
      await next();
      if (ctx.status === 404 && ctx.body == null) {
        const err = Object.assign(new Error('There is nothing at this address.'), { status: 404, expose: true });
        throw err;
      }
    } catch (caught) {
      const err = caught as Error & { status?: number; statusCode?: number; expose?: boolean; type?: string; code?: string; retryAfterSeconds?: number };
      let status = err.status ?? err.statusCode ?? 500;
      if (status < 400 || status > 599) status = 500;
      const exposed = status < 500 && err.expose !== false;
      if (!exposed) ctx.state.log?.error({ err, event: 'http.error' }, 'unhandled error');
      let description = exposed ? err.message : 'An unexpected error occurred. Please try again.';
      if (err.type === 'entity.parse.failed') description = 'The request body is not valid (malformed JSON or form data).';
      if (err.type === 'entity.too.large') description = 'The request body is larger than this server accepts.';
      ctx.status = status;
      if (status === 429 && err.retryAfterSeconds) ctx.set('Retry-After', String(err.retryAfterSeconds));
      if (wantsJson(ctx)) {
        ctx.body = { error: CODES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request'), error_description: description };
        return;
      }
      views.render(
        ctx,
        'error',
        {
          title: 'Error',
          heading: HEADINGS[status] ?? 'Something went wrong on our side',
          message: description,
          status,
          requestId: ctx.state.requestId,
        },
        status,
      );
    }
  };
}
