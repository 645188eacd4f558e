// The signed-in user behind an /account request, and the recent-authentication gate.
import type { Context } from 'koa';
import { findUserById, type User } from '../../identity/users.ts';
import { assess, type Assurance, type Proof } from '../../assurance/index.ts';
import { loadSessionProofs, mergeProofs, saveSessionProofs } from '../../sessions/proofs.ts';
import { touchDeviceSession } from '../../sessions/devices.ts';
import { sessionTtl } from '../../sessions/timeouts.ts';
import { randomToken } from '../../security/crypto.ts';
import type { FlowDeps } from '../context.ts';
import { timedProofs } from '../interaction.ts';
import type { MethodSuccess } from '../../methods/types.ts';
import { ACCOUNT_CLIENT_ID } from '../../oidc/provider.ts';
import { RateLimitedError } from '../../security/rate-limit.ts';
import { REAUTH_SESSION_BUDGET, type Reservation } from '../../security/login-throttle.ts';

const STATE_COOKIE = 'lk.account_state';

type ProviderSession = NonNullable<Awaited<ReturnType<ReturnType<FlowDeps['provider']>['Session']['get']>>>;

export interface AccountSession {
  user: User;
  sessionUid: string;
  /** oidc-provider's session behind the cookie (for id rotation and ending it). */
  session: ProviderSession;
  proofs: Proof[];
  assurance: Assurance;
}

class Redirect extends Error {
  location: string;
  constructor(location: string) {
    super('redirect');
    this.location = location;
  }
}

/** Turns a thrown Redirect into a 303; lets everything else through. */
export async function handleRedirects(ctx: Context, next: () => Promise<unknown>) {
  try {
    await next();
  } catch (err) {
    if (!(err instanceof Redirect)) throw err;
    ctx.status = 303;
    ctx.redirect(err.location);
  }
}

/** Only our own account pages are valid places to come back to. */
export function safeReturnPath(value: unknown, fallback = '/account'): string {
  return typeof value === 'string' && /^\/account(\/[A-Za-z0-9/_-]*)?(\?[A-Za-z0-9=&%_.-]*)?$/.test(value) ? value : fallback;
}

export async function currentAccount(deps: FlowDeps, ctx: Context): Promise<AccountSession | undefined> {
  const session = await deps.provider().Session.get(ctx as never);
  if (!session?.accountId || !session.uid) return undefined;
  const user = await findUserById(deps.db, session.accountId);
  if (!user || user.status !== 'active') return undefined;
  // Using the account pages is using the session: its idle timeout slides (at most once a minute).
  if (await touchDeviceSession(deps.db, session.uid)) await extendSession(deps, ctx, session);
  const proofs = await loadSessionProofs(deps.db, session.uid, user.id);
  return { user, sessionUid: session.uid, session, proofs, assurance: assess(proofs, deps.assurance) };
}

/** The signed-in user, or a redirect through the hosted sign-in that comes back to `returnTo`. */
export async function requireAccount(deps: FlowDeps, ctx: Context, returnTo = ctx.originalUrl): Promise<AccountSession> {
  const account = await currentAccount(deps, ctx);
  if (account) return account;
  throw new Redirect(accountSignInUrl(deps, ctx, randomToken(16), returnTo));
}

/**
 * The hosted sign-in for the account pages (requireAccount's redirect), also for a flow that
 * brings its own proof (an IdP-initiated SAML landing): `state` is the caller's, `extra` adds
 * authorization parameters (prompt=login: never the session already in this browser).
 */
export function accountSignInUrl(deps: FlowDeps, ctx: Context, state: string, returnTo = '/account', extra: Record<string, string> = {}): string {
  ctx.cookies.set(STATE_COOKIE, JSON.stringify({ state, returnTo: safeReturnPath(returnTo) }), {
    signed: true,
    httpOnly: true,
    sameSite: 'lax',
    secure: deps.config.secureCookies,
    path: '/account',
    maxAge: deps.config.ttl.interaction * 1000,
  });
  const auth = new URL('/auth', deps.config.issuer);
  auth.search = new URLSearchParams({ client_id: ACCOUNT_CLIENT_ID, response_type: 'none', scope: 'openid', redirect_uri: `${deps.config.issuer}/account/callback`, state, ...extra }).toString();
  return auth.toString();
}

/** Where the hosted sign-in returns to: checks state (no login CSRF) and goes back. */
export function accountCallback(deps: FlowDeps, ctx: Context): string {
  const raw = ctx.cookies.get(STATE_COOKIE, { signed: true });
  ctx.cookies.set(STATE_COOKIE, null, { path: '/account' });
  let saved: { state?: string; returnTo?: string } = {};
  try {
    saved = raw ? JSON.parse(raw) : {};
  } catch {
    /* tampered cookies fail the signature check before this */
  }
  if (!saved.state || saved.state !== ctx.query.state) throw Object.assign(new Error('This sign-in could not be matched to your browser. Open your account page again.'), { status: 400, expose: true });
  if (ctx.query.error) throw Object.assign(new Error('Sign-in was cancelled.'), { status: 400, expose: true });
  return safeReturnPath(saved.returnTo);
}

/** Seconds since the session last proved any factor. */
export function secondsSinceAuth(account: AccountSession, now = Math.floor(Date.now() / 1000)): number {
  const last = Math.max(0, ...account.proofs.map((p) => p.at));
  return now - last;
}

/**
 * Actions that could take the account over need an authentication within RECENT_AUTH_TTL:
 * otherwise the user re-authenticates and comes back to `returnTo` (the action's page).
 */
export function requireRecentAuth(deps: FlowDeps, account: AccountSession, returnTo: string): void {
  if (secondsSinceAuth(account) <= deps.config.recentAuthSeconds) return;
  throw new Redirect(`/account/reauth?return_to=${encodeURIComponent(safeReturnPath(returnTo))}`);
}

/** The strongest way the user can prove it is them: a passkey, else an authenticator app, else any. */
export type StrongestFactor = 'passkey' | 'totp' | 'any';

export async function strongestFactor(deps: FlowDeps, userId: string): Promise<StrongestFactor> {
  const enrolled = await deps.factors.enrolled(userId);
  return enrolled.passkeys > 0 ? 'passkey' : enrolled.totp ? 'totp' : 'any';
}

/**
 * Like requireRecentAuth, for the most dangerous action (deletion): the recent proof must be of the
 * user's strongest enrolled factor. A user with a passkey proves the passkey, with an
 * authenticator app a code; their password alone is not enough.
 */
export async function requireStrongRecentAuth(deps: FlowDeps, account: AccountSession, returnTo: string): Promise<void> {
  const factor = await strongestFactor(deps, account.user.id);
  const now = Math.floor(Date.now() / 1000);
  const recent = account.proofs.filter((p) => now - p.at <= deps.config.recentAuthSeconds && (factor === 'any' || p.method === factor));
  if (recent.length > 0) return;
  const factorParam = factor === 'any' ? '' : `&factor=${factor}`;
  throw new Redirect(`/account/reauth?return_to=${encodeURIComponent(safeReturnPath(returnTo))}${factorParam}`);
}

/** Records a factor proven on an account page (re-authentication) against the session. */
export async function recordAccountProof(deps: FlowDeps, account: AccountSession, success: MethodSuccess): Promise<void> {
  await saveSessionProofs(deps.db, account.sessionUid, account.user.id, mergeProofs(account.proofs, timedProofs([success])));
}

function sessionCookie(deps: FlowDeps, ctx: Context, value: string | null, expiresAt?: number) {
  ctx.cookies.set(deps.provider().cookieName('session'), value, {
    httpOnly: true,
    sameSite: 'lax',
    secure: deps.config.secureCookies,
    signed: true,
    path: '/',
    overwrite: true,
    ...(expiresAt ? { expires: new Date(expiresAt * 1000) } : {}),
  });
}

/**
 * A new session id for the same session (ASVS 3.2.1), after the user proved a factor again: a
 * cookie value copied before the re-authentication stops working. Proofs are keyed by the
 * session's uid, which stays.
 */
export async function rotateSessionId(deps: FlowDeps, ctx: Context, account: AccountSession): Promise<void> {
  account.session.resetIdentifier();
  await account.session.persist();
  // A session not remembered keeps a cookie that ends with the browser.
  sessionCookie(deps, ctx, account.session.jti, account.session.transient ? undefined : account.session.exp);
}

/** Saves the session with a fresh idle timeout (never past its absolute end: sessions/timeouts.ts). */
async function extendSession(deps: FlowDeps, ctx: Context, session: ProviderSession): Promise<void> {
  await session.save(sessionTtl(deps.config.sessionTimeouts, session));
  if (!session.transient) sessionCookie(deps, ctx, session.jti, session.exp);
}

/** Ends this browser's session (too many failed re-authentications): it proves nothing any more. */
export async function endAccountSession(deps: FlowDeps, ctx: Context, account: AccountSession): Promise<void> {
  await account.session.destroy();
  await deps.db('session_proofs').where({ session_uid: account.sessionUid }).delete();
  sessionCookie(deps, ctx, null);
}

/**
 * Spends an attempt to prove a factor on an account page before anything is verified. The
 * session's own budget running out ends the session: a stolen cookie gets a handful of guesses,
 * not an oracle. The account's password or second-factor budget is spent too.
 */
export async function reserveReauth(deps: FlowDeps, ctx: Context, account: AccountSession, method: 'password' | 'code' | 'passkey'): Promise<Reservation> {
  try {
    return await deps.loginThrottle.reserveReauth(account.sessionUid, account.user, method);
  } catch (err) {
    if (!(err instanceof RateLimitedError)) throw err;
    if (err.budget === REAUTH_SESSION_BUDGET) await signOutAfterFailures(deps, ctx, account, method);
    throw err;
  }
}

/** Records a wrong factor on an account page; the session ends with its last allowed failure. */
export async function reauthFailed(deps: FlowDeps, ctx: Context, account: AccountSession, method: string, reservation: Reservation, extra: Record<string, unknown> = {}): Promise<void> {
  await deps.audit(ctx, { type: 'login.failure', userId: account.user.id, data: { method, via: 'reauth', ...extra } });
  if (reservation.spentOut.includes(REAUTH_SESSION_BUDGET)) await signOutAfterFailures(deps, ctx, account, method);
}

async function signOutAfterFailures(deps: FlowDeps, ctx: Context, account: AccountSession, method: string): Promise<never> {
  await endAccountSession(deps, ctx, account);
  await deps.audit(ctx, { type: 'session.ended', userId: account.user.id, data: { reason: 'reauth.failures', method } });
  throw Object.assign(new Error('Too many failed attempts to confirm it’s you. For your security you were signed out: sign in again.'), { status: 429, expose: true });
}
