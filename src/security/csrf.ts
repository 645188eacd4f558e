// CSRF protection for our own forms: a random per-browser secret in a signed, httpOnly cookie,
// and a form token that is an HMAC of it. A cross-site page can neither read the cookie nor
// compute the token. Checked right after body parsing, before any handler runs.
import crypto from 'node:crypto';
import type { Middleware } from 'koa';
import { constantTimeEqual, randomToken } from './crypto.ts';

const COOKIE = 'lk.csrf';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export class CsrfError extends Error {
  status = 403;
  expose = true;
  constructor() {
    super('This form has expired or did not come from this site. Go back, reload the page and try again.');
  }
}

export function csrfProtection(options: { key: Buffer; secure: boolean }): Middleware {
  const tokenFor = (secret: string) => crypto.createHmac('sha256', options.key).update(secret).digest('base64url');

  return async (ctx, next) => {
    let secret = ctx.cookies.get(COOKIE, { signed: true });
    if (!SAFE_METHODS.has(ctx.method)) {
      const body = (ctx.request as { body?: Record<string, unknown> }).body;
      const sent = typeof body?._csrf === 'string' ? body._csrf : ctx.get('x-csrf-token');
      if (!secret || !sent || !constantTimeEqual(sent, tokenFor(secret))) throw new CsrfError();
    }
    if (!secret) {
      secret = randomToken(32);
      ctx.cookies.set(COOKIE, secret, { signed: true, httpOnly: true, sameSite: 'lax', secure: options.secure, path: '/', overwrite: true });
    }
    ctx.state.csrfToken = tokenFor(secret);
    await next();
  };
}
