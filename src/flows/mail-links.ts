// Pieces shared by the flows that send or receive emailed links: the pages for a link that
// cannot be used, the confirm-before-consume page, rate-limit keys and response-time padding.
import type { Context } from 'koa';
import type { LinkState } from '../security/link-tokens.ts';
import type { FlowDeps } from './context.ts';

export interface LinkProblemAction {
  url: string;
  text: string;
}

/** A clear page for a link that was already used, has expired or is not valid, offering a way on. */
export function renderLinkProblem(deps: FlowDeps, ctx: Context, state: LinkState['state'], action: LinkProblemAction, what = 'link'): void {
  const heading = state === 'used' ? `This ${what} was already used` : state === 'expired' ? `This ${what} has expired` : `This ${what} is not valid`;
  const message =
    state === 'used'
      ? 'Each link works only once, and this one has been used. You can ask for a new one.'
      : state === 'expired'
        ? 'For your security, links in our emails work only for a limited time. You can ask for a new one.'
        : 'The link may be incomplete (check that you copied all of it) or it was replaced by a newer one. You can ask for a new one.';
  deps.views.render(ctx, 'error', { title: heading, heading, message, actionUrl: action.url, actionText: action.text }, state === 'unknown' ? 400 : 410);
}

/**
 * A link's GET only shows this page; the button POSTs it back, and only then is the link spent.
 * Mail scanners that prefetch links therefore never use them up.
 */
export function renderConfirmLink(
  deps: FlowDeps,
  ctx: Context,
  vars: { heading: string; message?: string; detail?: string; action: string; token: string; button: string; fields?: Record<string, string> },
  status = 200,
): void {
  ctx.set('Referrer-Policy', 'no-referrer');
  deps.views.render(ctx, 'confirm-link', { title: vars.heading, ...vars }, status);
}

/** Rate-limit keys: the client address, and the normalised email address typed. */
export function ipKey(ctx: Context): string {
  return `ip:${ctx.ip}`;
}

export function addressKey(email: string): string {
  return `email:${email.trim().toLowerCase()}`;
}

/**
 * Runs `work` and answers no sooner than `floorMs` after the request started, so whether an
 * address exists does not show in the response time (both branches also do similar work).
 */
export async function withResponseFloor<T>(floorMs: number, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  const result = await work();
  const left = floorMs - (performance.now() - started);
  if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  return result;
}

/** The pages that answer "we sent you a link" must look the same whether or not a mail went out. */
export const RESPONSE_FLOOR_MS = 250;

export function bodyOf(ctx: Context): Record<string, unknown> {
  return ((ctx.request as { body?: unknown }).body ?? {}) as Record<string, unknown>;
}

export function stringField(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  return typeof value === 'string' ? value : undefined;
}
