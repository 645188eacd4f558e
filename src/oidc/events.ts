// Provider events → audit trail and metrics. Sign-in attempts are audited by the flows.
import Provider from 'oidc-provider';
import type { KoaContextWithOIDC } from 'oidc-provider';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Audit } from '../security/audit.ts';
import type { Db } from '../db/knex.ts';
import { findUserById } from '../identity/users.ts';
import type { Mailer } from '../mail/index.ts';
import { saveSessionProofs } from '../sessions/proofs.ts';
import type { Proof } from '../assurance/index.ts';
import type { DeviceSessionHooks } from '../sessions/sign-in.ts';

/** Work started by provider events that must finish before the response goes out (see app.ts). */
export function deferUntilResponse(ctx: { state: Record<string, unknown> }, work: Promise<unknown>): void {
  const pending = (ctx.state.afterProvider as Promise<unknown>[] | undefined) ?? [];
  pending.push(work);
  ctx.state.afterProvider = pending;
}

function accountOf(ctx: KoaContextWithOIDC): string | undefined {
  const e = ctx.oidc?.entities as Record<string, { accountId?: string } | undefined> | undefined;
  return ctx.oidc?.session?.accountId ?? e?.AuthorizationCode?.accountId ?? e?.RefreshToken?.accountId ?? e?.Grant?.accountId;
}

/** Tells the user that a used refresh token came back: someone may hold a copy of the app's tokens. */
async function mailRefreshReuse(db: Db, mail: Mailer, ctx: KoaContextWithOIDC, accountId: string): Promise<void> {
  const user = await findUserById(db, accountId);
  if (!user || user.status !== 'active') return;
  const client = ctx.oidc.client;
  await mail.enqueue(db, user.email, 'refresh-token-reuse', {
    name: user.name,
    email: user.email,
    clientName: client?.clientName ?? client?.clientId,
    detectedAt: new Date().toUTCString(),
    accountLink: mail.link('/account'),
    resetLink: mail.link('/forgot-password'),
  });
  mail.kick();
}

export function attachProviderEvents(provider: Provider, db: Db, audit: Audit, metrics: Metrics, log: Logger, mail: Mailer, devices?: DeviceSessionHooks): void {
  // The login result carries each factor's proof; the session uid is known only now.
  provider.on('interaction.ended', (ctx: KoaContextWithOIDC) => {
    const proofs = (ctx.oidc.result as { latchkey?: { proofs?: Proof[] } } | undefined)?.latchkey?.proofs;
    const session = ctx.oidc.session;
    if (proofs && session?.uid && session.accountId) deferUntilResponse(ctx, saveSessionProofs(db, session.uid, session.accountId, proofs));
    // A finished sign-in (or step-up) is a device session; "remember me" is the session not being transient.
    const login = (ctx.oidc.result as { login?: { acr?: string } } | undefined)?.login;
    if (devices && proofs && login && session?.uid && session.accountId) {
      const record = { sessionUid: session.uid, userId: session.accountId, methods: [...new Set(proofs.map((p) => p.method))], acr: login.acr, remember: !session.transient };
      deferUntilResponse(ctx, devices.signedIn(ctx, record));
    }
  });
  // Every use of a session saves it (sliding its idle timeout): note the device's last activity.
  provider.on('session.saved', (session: { uid?: string; accountId?: string }) => {
    if (!devices || !session.uid || !session.accountId) return;
    const work = devices.used(session.uid).catch((err: Error) => log.warn({ event: 'device_session.touch_failed', err: err.message }, 'last activity not recorded'));
    const ctx = Provider.ctx;
    if (ctx) deferUntilResponse(ctx, work);
  });
  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    const grantType = String(ctx.oidc.params?.grant_type ?? 'unknown');
    metrics.tokensIssued.inc({ grant_type: grantType });
    // A used refresh token presented again within REFRESH_REUSE_GRACE (see adapter.ts): served, but on record.
    const data = ctx.state.refreshGraceRetry ? { grantType, graceRetry: true } : { grantType };
    void audit(ctx, { type: 'token.issued', userId: accountOf(ctx), clientId: ctx.oidc.client?.clientId, data });
  });
  provider.on('grant.revoked', (ctx: KoaContextWithOIDC, grantId: string) => {
    // Revoking a grant from the token endpoint only happens when a used refresh token or code comes back.
    const reuse = ctx.oidc?.route === 'token';
    const type = reuse ? 'token.reuse_detected' : ctx.oidc?.route === 'revocation' ? 'token.revoked' : 'grant.revoked';
    const grantRef = grantId.slice(0, 8);
    const grantType = reuse ? String(ctx.oidc.params?.grant_type ?? 'unknown') : undefined;
    const userId = accountOf(ctx);
    void audit(ctx, { type, userId, clientId: ctx.oidc?.client?.clientId, data: { grant: grantRef, route: ctx.oidc?.route, grantType } });
    // A refresh token used after its grace: this device's tokens are revoked, and the user is told.
    if (reuse && grantType === 'refresh_token' && userId) {
      deferUntilResponse(
        ctx,
        mailRefreshReuse(db, mail, ctx, userId).catch((err: Error) => log.error({ event: 'mail.enqueue_failed', err: err.message }, 'refresh reuse mail not queued')),
      );
    }
  });
  provider.on('end_session.success', (ctx: KoaContextWithOIDC) => {
    void audit(ctx, { type: 'logout', userId: ctx.oidc.session?.accountId, clientId: ctx.oidc.client?.clientId });
  });
  // Typings omit this event; it is emitted with (ctx, error, client, accountId, sid). Log the
  // client's id only: the client object holds its secret.
  (provider as unknown as NodeJS.EventEmitter).on('backchannel.error', (_ctx: unknown, err: Error & { cause?: Error }, client: { clientId?: string } | undefined) => {
    log.warn({ event: 'backchannel.error', clientId: client?.clientId, err: err.message, cause: err.cause?.message }, 'back-channel logout delivery failed');
  });
  provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
    (ctx.state?.log ?? log).error({ event: 'oidc.server_error', err }, 'provider error');
  });
}
