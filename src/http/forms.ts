// Body parsing (size-limited) and validation for our own routes. oidc-provider parses its own.
import { bodyParser } from '@koa/bodyparser';
import type { Context, Middleware } from 'koa';
import type { z } from 'zod';

export function parseBody(limit: string): Middleware {
  return bodyParser({ enableTypes: ['form', 'json'], formLimit: limit, jsonLimit: limit, encoding: 'utf-8' }) as unknown as Middleware;
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
