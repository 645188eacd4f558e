// SCIM's error format (RFC 7644 §3.12): every failure under /scim/v2 is answered as
// `{"schemas": [Error URN], "status": "400", "scimType": "invalidValue", "detail": "…"}` with
// the same HTTP status, never as a page or as the OAuth-style JSON of the rest of the app.
import type { Context } from 'koa';
import { RateLimitedError } from '../security/rate-limit.ts';

export const ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';
export const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8';

export type ScimType =
  | 'invalidFilter'
  | 'tooMany'
  | 'uniqueness'
  | 'mutability'
  | 'invalidSyntax'
  | 'invalidPath'
  | 'noTarget'
  | 'invalidValue'
  | 'invalidVers'
  | 'sensitive';

export class ScimError extends Error {
  status: number;
  scimType?: ScimType;
  constructor(status: number, detail: string, scimType?: ScimType) {
    super(detail);
    this.status = status;
    this.scimType = scimType;
  }
}

export const badRequest = (scimType: ScimType, detail: string) => new ScimError(400, detail, scimType);
export const notFound = (detail = 'No such resource.') => new ScimError(404, detail);

export function sendScim(ctx: Context, status: number, body: unknown): void {
  ctx.status = status;
  ctx.body = JSON.stringify(body);
  ctx.type = SCIM_CONTENT_TYPE;
}

/** Turns whatever was thrown into a SCIM error response (a 500 is logged, its detail never shown). */
export function respondWithError(ctx: Context, caught: unknown): void {
  const err = caught as Error & { status?: number; statusCode?: number; expose?: boolean; type?: string };
  let status: number;
  let detail: string;
  let scimType: ScimType | undefined;
  if (caught instanceof ScimError) {
    ({ status, scimType } = caught);
    detail = caught.message;
  } else if (caught instanceof RateLimitedError) {
    status = 429;
    detail = 'Too many requests with a wrong token from this address. Wait and try again.';
    ctx.set('Retry-After', String(caught.retryAfterSeconds));
  } else {
    status = err.status ?? err.statusCode ?? 500;
    if (status < 400 || status > 599) status = 500;
    if (status === 413 || err.type === 'entity.too.large') {
      status = 413;
      detail = 'The request body is too large.';
    } else if (status === 400 && /json|parse|unexpected/i.test(err.message)) {
      detail = 'The request body is not valid JSON.';
      scimType = 'invalidSyntax';
    } else if (status === 415) {
      detail = 'Send application/scim+json (or application/json).';
    } else if (status < 500 && err.expose !== false) {
      detail = err.message;
      if (status === 400) scimType = 'invalidValue';
    } else {
      ctx.state.log?.error({ err, event: 'scim.error' }, 'SCIM request failed');
      status = 500;
      detail = 'Something went wrong on our side.';
    }
  }
  const body: Record<string, unknown> = { schemas: [ERROR_SCHEMA], status: String(status), detail };
  if (scimType) body.scimType = scimType;
  if (status === 401) ctx.set('WWW-Authenticate', 'Bearer realm="SCIM"');
  sendScim(ctx, status, body);
}
