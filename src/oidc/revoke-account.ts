// "Sign out everywhere" for one user: after a password reset (or a reported email change) every
// browser session, authorization code, access token and refresh token of the user dies, and the
// relying parties that registered a back-channel logout URI are told, per session.
//
// oidc-provider only sends logout tokens during its own end_session, so they are sent here with
// the provider's Client#backchannelLogout(sub, sid), which signs them with the provider's keys
// and delivers them through its (SSRF-protected) HTTP client. Grants (remembered consent) stay:
// they mint nothing on their own once sessions and refresh tokens are gone.
import type Provider from 'oidc-provider';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';

export interface RevokeResult {
  sessions: number;
  artifacts: number;
  backchannel: { delivered: number; failed: number };
}

interface SessionPayload {
  authorizations?: Record<string, { sid?: string }>;
}

export async function revokeAccountEverywhere(db: Db, provider: Provider, accountId: string, log: Logger): Promise<RevokeResult> {
  const sessions = (await db('oidc_payloads').where({ model: 'Session', account_id: accountId }).select('payload')) as { payload: SessionPayload }[];
  const targets = sessions.flatMap(({ payload }) =>
    Object.entries(payload.authorizations ?? {}).flatMap(([clientId, authorization]) => (authorization.sid ? [{ clientId, sid: authorization.sid }] : [])),
  );

  const removed = await db.transaction(async (trx) => {
    const rows = await trx('oidc_payloads').where({ account_id: accountId }).whereNot({ model: 'Grant' }).delete(['model']);
    await trx('session_proofs').where({ user_id: accountId }).delete();
    // Half-done sign-ins too: whoever had the old password must not finish with a second factor.
    await trx('pending_logins').where({ user_id: accountId }).delete();
    return rows as { model: string }[];
  });

  const backchannel = await sendBackchannelLogouts(provider, accountId, targets, log);
  return { sessions: removed.filter((r) => r.model === 'Session').length, artifacts: removed.length, backchannel };
}

/** Back-channel logout of `sub` to each client (that registered a URI) of each ended session. */
export async function sendBackchannelLogouts(
  provider: Provider,
  sub: string,
  targets: { clientId: string; sid: string }[],
  log: Logger,
): Promise<{ delivered: number; failed: number }> {
  const backchannel = { delivered: 0, failed: 0 };
  await Promise.all(
    targets.map(async ({ clientId, sid }) => {
      const client = await provider.Client.find(clientId).catch(() => undefined);
      if (!client?.backchannelLogoutUri) return;
      try {
        await (client as unknown as { backchannelLogout(sub: string, sid: string): Promise<void> }).backchannelLogout(sub, sid);
        backchannel.delivered++;
      } catch (err) {
        backchannel.failed++;
        log.warn({ event: 'backchannel.error', clientId, err: (err as Error).message }, 'back-channel logout delivery failed');
      }
    }),
  );
  return backchannel;
}
