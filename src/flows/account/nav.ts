// The account console's navigation (views/partials/account-nav.njk): which section is shown, and
// the relying party that sent the user ("Back to <client>"), kept across sections.
import type { Context } from 'koa';
import type { FlowDeps } from '../context.ts';

export type AccountSectionKey = 'profile' | 'email' | 'security' | 'sessions' | 'history' | 'apps' | 'delete';

export interface ReturnTarget {
  clientId: string;
  clientName: string;
  /** Only when it equals one of the client's registered redirect or post-logout URIs. */
  returnTo?: string;
}

export interface AccountNav {
  current: AccountSectionKey;
  /** "?client_id=…&return_to=…" with only validated values, or "". */
  query: string;
  back?: { name: string; url: string };
  /** The client behind `back`. */
  clientId?: string;
}

const CLIENT_ID_RE = /^[A-Za-z0-9._~-]{1,128}$/;

/**
 * The client named by `client_id` and the `return_to` it may be sent back to: honoured only when
 * it exactly equals one of the client's registered redirect or post-logout URIs (no prefix or
 * pattern match); anything else is ignored, never followed.
 */
export async function returnTarget(deps: FlowDeps, clientId: unknown, returnTo: unknown): Promise<ReturnTarget | undefined> {
  if (typeof clientId !== 'string' || !CLIENT_ID_RE.test(clientId)) return undefined;
  const client = await deps.provider().Client.find(clientId).catch(() => undefined);
  if (!client) return undefined;
  const registered = [...(client.redirectUris ?? []), ...(client.postLogoutRedirectUris ?? [])];
  const honoured = typeof returnTo === 'string' && registered.includes(returnTo) ? returnTo : undefined;
  return { clientId, clientName: client.clientName ?? clientId, returnTo: honoured };
}

/** The query string that carries a validated target from section to section. */
export function targetQuery(target: ReturnTarget | undefined): string {
  if (!target?.returnTo) return '';
  return `?${new URLSearchParams({ client_id: target.clientId, return_to: target.returnTo }).toString()}`;
}

/** Template variables for the navigation: `deps.views.render(ctx, 'x', { accountNav: await accountNav(deps, ctx, 'sessions'), … })`. */
export async function accountNav(deps: FlowDeps, ctx: Context, current: AccountSectionKey): Promise<AccountNav> {
  const target = await returnTarget(deps, ctx.query.client_id, ctx.query.return_to);
  return {
    current,
    query: targetQuery(target),
    ...navBack(target),
  };
}

/** The "Back to <client>" part of the navigation, when the target's return_to was honoured. */
export function navBack(target: ReturnTarget | undefined): Pick<AccountNav, 'back' | 'clientId'> {
  return target?.returnTo ? { back: { name: target.clientName, url: target.returnTo }, clientId: target.clientId } : {};
}
