// Ends chosen browser sessions of one user: the provider session, every grant issued under it
// (with its access tokens, refresh-token family and codes), its proofs and device row, in one
// transaction, so its tokens fail introspection at once; then back-channel logout to each client
// that registered for it. Modelled on oidc/revoke-account.ts, for one device instead of all.
import type Provider from 'oidc-provider';
import type { Db } from '../db/knex.ts';
import type { Logger } from '../observability/logger.ts';
import { sha256Hex } from '../security/crypto.ts';
import { sendBackchannelLogouts } from '../oidc/revoke-account.ts';

export interface SessionRevokeResult {
  sessions: number;
  artifacts: number;
  backchannel: { delivered: number; failed: number };
}

interface SessionPayload {
  authorizations?: Record<string, { sid?: string; grantId?: string }>;
}

const NOTHING: SessionRevokeResult = { sessions: 0, artifacts: 0, backchannel: { delivered: 0, failed: 0 } };

/** Session uids of the user's live and recent provider sessions, except `except`. */
export async function sessionUidsOf(db: Db, userId: string, except?: string): Promise<string[]> {
  const rows = (await db('oidc_payloads').where({ model: 'Session', account_id: userId }).whereNotNull('uid').distinct('uid')) as { uid: string }[];
  return rows.map((r) => r.uid).filter((uid) => uid !== except);
}

export async function revokeSessions(db: Db, provider: Provider, userId: string, sessionUids: string[], log: Logger): Promise<SessionRevokeResult> {
  if (sessionUids.length === 0) return NOTHING;
  const sessions = (await db('oidc_payloads').where({ model: 'Session', account_id: userId }).whereIn('uid', sessionUids).select('payload')) as { payload: SessionPayload }[];
  const authorizations = sessions.flatMap(({ payload }) => Object.entries(payload.authorizations ?? {}));
  const targets = authorizations.flatMap(([clientId, a]) => (a.sid ? [{ clientId, sid: a.sid }] : []));
  // Grants the session holds now, and any its tokens were issued under (an earlier consent).
  const issued = (await db('oidc_payloads')
    .where({ account_id: userId })
    .whereRaw(`payload->>'sessionUid' IN (${sessionUids.map(() => '?').join(', ')})`, sessionUids)
    .whereNotNull('grant_id')
    .distinct('grant_id')) as { grant_id: string }[];
  const grantIds = [...new Set([...authorizations.flatMap(([, a]) => (a.grantId ? [a.grantId] : [])), ...issued.map((r) => r.grant_id)])];
  // Remembered consent is a template other devices start from: it is never this session's own.
  const remembered = new Set(((await db('remembered_grants').where({ user_id: userId }).select('grant_id')) as { grant_id: string }[]).map((r) => r.grant_id));
  const ownGrants = grantIds.filter((id) => !remembered.has(id));

  const removed = await db.transaction(async (trx) => {
    const rows = (await trx('oidc_payloads').where({ model: 'Session', account_id: userId }).whereIn('uid', sessionUids).delete(['model'])) as { model: string }[];
    if (grantIds.length) {
      rows.push(...((await trx('oidc_payloads').whereIn('grant_id', grantIds).whereNot({ model: 'Grant' }).delete(['model'])) as { model: string }[]));
    }
    if (ownGrants.length) {
      rows.push(...((await trx('oidc_payloads').where({ model: 'Grant' }).whereIn('id_hash', ownGrants.map(sha256Hex)).delete(['model'])) as { model: string }[]));
    }
    await trx('session_proofs').where({ user_id: userId }).whereIn('session_uid', sessionUids).delete();
    await trx('device_sessions').where({ user_id: userId }).whereIn('session_uid', sessionUids).delete();
    return rows;
  });

  const backchannel = await sendBackchannelLogouts(provider, userId, targets, log);
  return { sessions: removed.filter((r) => r.model === 'Session').length, artifacts: removed.length, backchannel };
}

/**
 * After a password change: every refresh token, access token and code of the user not issued
 * under `keepSessionUid` dies too, also those of sessions that already ended (an intruder's
 * offline tokens outlive their browser session).
 */
export async function revokeTokensOutside(db: Db, userId: string, keepSessionUid: string): Promise<number> {
  const rows = await db('oidc_payloads')
    .where({ account_id: userId })
    .whereIn('model', ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'DeviceCode', 'BackchannelAuthenticationRequest'])
    .whereRaw("coalesce(payload->>'sessionUid', '') <> ?", [keepSessionUid])
    .delete(['model']);
  return rows.length;
}
