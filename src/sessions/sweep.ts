// Expiry for the sign-in state we keep beside oidc-provider's: WebAuthn challenges, half-done
// sign-ins, and the per-factor proofs and device rows of sessions that no longer exist.
import type { Db } from '../db/knex.ts';
import { purgeEndedDeviceSessions } from './devices.ts';

export async function purgeSignInState(db: Db, limit = 5000): Promise<{ challenges: number; pendingLogins: number; sessionProofs: number; deviceSessions: number }> {
  const challenges = await db('webauthn_challenges')
    .whereIn('challenge', db('webauthn_challenges').select('challenge').where('expires_at', '<', db.fn.now()).limit(limit))
    .delete(['challenge']);
  const pendingLogins = await db('pending_logins')
    .whereIn('interaction_uid', db('pending_logins').select('interaction_uid').where('expires_at', '<', db.fn.now()).limit(limit))
    .delete(['interaction_uid']);
  // Proofs whose session is gone (logged out, expired and swept, or revoked). Recent ones are
  // left alone: proofs are written a moment before the provider saves a new session.
  const orphaned = db('session_proofs as sp')
    .select('sp.session_uid')
    .where('sp.updated_at', '<', db.raw("now() - interval '10 minutes'"))
    .whereNotExists(db('oidc_payloads as p').select(db.raw('1')).where('p.model', 'Session').whereRaw('p.uid = sp.session_uid'))
    .limit(limit);
  const sessionProofs = await db('session_proofs').whereIn('session_uid', orphaned).delete(['session_uid']);
  const deviceSessions = await purgeEndedDeviceSessions(db, limit);
  return { challenges: challenges.length, pendingLogins: pendingLogins.length, sessionProofs: sessionProofs.length, deviceSessions };
}
