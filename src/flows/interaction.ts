// Shared steps of every sign-in journey: load the pending OIDC interaction and finish it.
import Provider, { errors, type InteractionResults } from 'oidc-provider';
import type { Context } from 'koa';
import type { FlowDeps } from './context.ts';
import { assess, type Proof } from '../assurance/index.ts';
import { loadSessionProofs } from '../sessions/proofs.ts';
import type { MethodSuccess } from '../methods/types.ts';
import { sessionRemembered } from '../sessions/devices.ts';

export type InteractionDetails = Awaited<ReturnType<Provider['interactionDetails']>>;

export class InteractionExpiredError extends Error {
  status = 400;
  expose = true;
  constructor() {
    super('This sign-in link has expired or was already used. Go back to the application and start signing in again.');
  }
}

/** The pending interaction for this browser, or a friendly error when it is gone or not this one. */
export async function loadInteraction(deps: FlowDeps, ctx: Context): Promise<InteractionDetails> {
  try {
    const details = await deps.provider().interactionDetails(ctx.req, ctx.res);
    if (details.uid !== ctx.params.uid) throw new InteractionExpiredError();
    return details;
  } catch (err) {
    if (err instanceof errors.SessionNotFound) throw new InteractionExpiredError();
    throw err;
  }
}

/** Stores the result on the interaction and returns where the browser goes next. */
export async function interactionResultUrl(deps: FlowDeps, ctx: Context, result: InteractionResults, merge = true): Promise<string> {
  return deps.provider().interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: merge });
}

export async function finishInteraction(deps: FlowDeps, ctx: Context, result: InteractionResults, merge = true): Promise<void> {
  redirectSeeOther(ctx, await interactionResultUrl(deps, ctx, result, merge));
}

export function redirectSeeOther(ctx: Context, location: string): void {
  ctx.status = 303;
  ctx.redirect(location);
}

export function timedProofs(successes: MethodSuccess[], at = Math.floor(Date.now() / 1000)): Proof[] {
  return successes.map(({ method, amr, factor, phishingResistant }) => ({ method, amr: [...amr], factor, phishingResistant, at }));
}

/** What the browser's existing session already proved, when it belongs to `accountId`. */
export async function existingProofs(deps: FlowDeps, details: InteractionDetails, accountId: string): Promise<Proof[]> {
  if (!details.session?.uid || details.session.accountId !== accountId) return [];
  return loadSessionProofs(deps.db, details.session.uid, accountId);
}

/**
 * The login result for `proofs` (this authentication's factors, plus the session's earlier ones
 * on a step-up). The per-factor proofs travel in the interaction result and are stored against
 * the session uid when the provider resumes. Returns where the browser goes next.
 */
export async function loginResultUrl(deps: FlowDeps, ctx: Context, accountId: string, proofs: Proof[], where: { interactionUid?: string; sessionUid?: string } = {}): Promise<string> {
  const { acr, amr, authTime } = assess(proofs, deps.assurance);
  // "Keep me signed in" (a persistent cookie and the long idle timeout): ticked on this sign-in's
  // password form, or kept from the session a step-up elevates.
  const remember = rememberTicked(ctx, where.interactionUid) || (where.sessionUid ? await sessionRemembered(deps.db, where.sessionUid, accountId) : false);
  const result: InteractionResults = { login: { accountId, acr, amr, ts: authTime, remember }, latchkey: { proofs } };
  return interactionResultUrl(deps, ctx, result, false);
}

const REMEMBER_COOKIE = 'lk.remember';

/** Records the "Keep me signed in" box of interaction `uid`'s password form, for that interaction only. */
export function setRememberChoice(deps: FlowDeps, ctx: Context, uid: string, remember: boolean): void {
  // Read back within this request too: the password may complete the sign-in right now.
  ctx.state.rememberChoice = remember ? uid : '';
  ctx.cookies.set(REMEMBER_COOKIE, remember ? uid : null, {
    signed: true,
    httpOnly: true,
    sameSite: 'lax',
    secure: deps.config.secureCookies,
    path: `/interaction/${uid}`,
    maxAge: deps.config.ttl.interaction * 1000,
    overwrite: true,
  });
}

function rememberTicked(ctx: Context, interactionUid: string | undefined): boolean {
  if (!interactionUid) return false;
  const chosen = typeof ctx.state.rememberChoice === 'string' ? ctx.state.rememberChoice : ctx.cookies.get(REMEMBER_COOKIE, { signed: true });
  return chosen === interactionUid;
}

export function clientName(details: InteractionDetails, client?: { clientName?: string; clientId: string }): string | undefined {
  return client?.clientName ?? client?.clientId ?? (details.params.client_id as string | undefined);
}
