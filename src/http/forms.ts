// Body parsing (size-limited) and validation for our own routes. oidc-provider parses its own.
import { bodyParser } from '@koa/bodyparser';
import type { Context, Middleware } from 'koa';
import { z } from 'zod';

/** A 400 the error handler shows as-is: a page for people, `{error, error_description}` for programs. */
function badRequest(message: string): Error {
  return Object.assign(new Error(message), { status: 400, expose: true });
}

/**
 * True when any key or string value, at any depth, holds a NUL character. Iterative: a 64 kB
 * body can nest thousands of arrays deep, and a recursive walk would overflow the stack.
 */
export function containsNul(value: unknown): boolean {
  const stack: unknown[] = [value];
  while (stack.length) {
    const item = stack.pop();
    if (typeof item === 'string') {
      if (item.includes('\0')) return true;
    } else if (Array.isArray(item)) {
      stack.push(...item);
    } else if (item !== null && typeof item === 'object') {
      for (const [key, child] of Object.entries(item)) {
        if (key.includes('\0')) return true;
        stack.push(child);
      }
    }
  }
  return false;
}

// PostgreSQL refuses NUL in text, and no value we take has a use for it: refused up front
// instead of failing as a database error (a 500) wherever the value is first stored or looked up.
const NUL_MESSAGE = 'The request contains a NUL character, which no field accepts.';

/**
 * For every request, ours and oidc-provider's: a NUL in the path or the query string is a 400.
 * (The provider reads its own bodies; ours are checked by parseBody.)
 */
export function rejectNulInUrl(): Middleware {
  return (ctx, next) => {
    if (/%00/i.test(ctx.path) || containsNul(ctx.query)) throw badRequest(NUL_MESSAGE);
    return next();
  };
}

export function parseBody(limit: string): Middleware {
  const parse = bodyParser({ enableTypes: ['form', 'json'], formLimit: limit, jsonLimit: limit, encoding: 'utf-8' }) as unknown as Middleware;
  return (ctx, next) =>
    parse(ctx, () => {
      if (containsNul((ctx.request as { body?: unknown }).body)) throw badRequest(NUL_MESSAGE);
      return next();
    });
}

export type FieldErrors = Record<string, string>;

/** Validates the parsed body; on failure returns the first message per field for the page. */
export function validateBody<S extends z.ZodType>(
  ctx: Context,
  schema: S,
): { ok: true; data: z.output<S> } | { ok: false; fieldErrors: FieldErrors; raw: Record<string, unknown> } {
  const raw = ((ctx.request as { body?: unknown }).body ?? {}) as Record<string, unknown>;
  const parsed = schema.safeParse(raw);
  if (parsed.success) return { ok: true, data: parsed.data };
  const fieldErrors: FieldErrors = {};
  for (const issue of parsed.error.issues) {
    const key = String(issue.path[0] ?? 'form');
    fieldErrors[key] ??= issue.message;
  }
  return { ok: false, fieldErrors, raw };
}

/**
 * The JSON body of a script endpoint, validated, or a 400 naming the first wrong field. For
 * bodies a handler would otherwise cast to a type and pass on (a `{}` or `[]` must not reach a
 * library or a query as if it were a WebAuthn response).
 */
export function parseJsonBody<S extends z.ZodType>(ctx: Context, schema: S): z.output<S> {
  const parsed = schema.safeParse((ctx.request as { body?: unknown }).body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length ? issue.path.join('.') : 'body';
  throw badRequest(`The request body is not valid (${where}: ${issue.message}).`);
}

// WebAuthn responses as @simplewebauthn/browser serialises them (base64url strings). Loose:
// the library checks the contents; this only makes sure the shape is what it will read.
const b64url = z.string().min(1).max(65_536).regex(/^[A-Za-z0-9_-]*={0,2}$/, 'must be base64url');
const credentialBase = {
  id: b64url.max(1_024),
  rawId: b64url.max(1_024),
  type: z.literal('public-key'),
  authenticatorAttachment: z.enum(['platform', 'cross-platform']).optional(),
  clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
};

/** The body of a passkey sign-in or re-authentication (AuthenticationResponseJSON). */
export const passkeyAssertionBody = z.looseObject({
  ...credentialBase,
  response: z.looseObject({
    clientDataJSON: b64url,
    authenticatorData: b64url,
    signature: b64url,
    userHandle: b64url.optional(),
  }),
});

/** The body of a passkey registration: `{ response: RegistrationResponseJSON, name? }`. */
export const passkeyRegistrationBody = z.object({
  response: z.looseObject({
    ...credentialBase,
    response: z.looseObject({
      clientDataJSON: b64url,
      attestationObject: b64url,
      authenticatorData: b64url.optional(),
      transports: z.array(z.string().max(64)).max(16).optional(),
      publicKeyAlgorithm: z.number().int().optional(),
      publicKey: b64url.optional(),
    }),
  }),
  name: z.string().max(200).nullish(),
});
