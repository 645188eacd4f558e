// A sign-in that has proven some factors but not yet enough. Bound to the interaction uid:
// only the browser holding that interaction's cookie can continue it, and it is not a session.
import type { Db } from '../../db/knex.ts';
import type { Proof } from '../../assurance/index.ts';

export interface PendingLogin {
  userId: string;
  proofs: Proof[];
}

/** Saves what this sign-in has proven; a save for another user or new proofs owes no recovery codes. */
export async function savePending(db: Db, interactionUid: string, pending: PendingLogin, ttlSeconds: number, recoveryCodesDue = false): Promise<void> {
  const row = {
    interaction_uid: interactionUid,
    user_id: pending.userId,
    proofs: JSON.stringify(pending.proofs),
    recovery_codes_due: recoveryCodesDue,
    expires_at: db.raw('now() + make_interval(secs => ?)', [ttlSeconds]),
  };
  await db('pending_logins').insert(row).onConflict('interaction_uid').merge(['user_id', 'proofs', 'recovery_codes_due', 'expires_at']);
}

export async function loadPending(db: Db, interactionUid: string): Promise<PendingLogin | undefined> {
  const row = await db('pending_logins').where({ interaction_uid: interactionUid }).andWhere('expires_at', '>', db.fn.now()).first('user_id', 'proofs');
  return row ? { userId: row.user_id, proofs: row.proofs } : undefined;
}

/** Marks that this sign-in just enrolled the user's first second factor: its recovery codes are owed, once. */
export async function owePendingRecoveryCodes(db: Db, interactionUid: string): Promise<void> {
  await db('pending_logins').where({ interaction_uid: interactionUid }).update({ recovery_codes_due: true });
}

/** True once for a sign-in that is owed recovery codes: one conditional UPDATE, so never twice. */
export async function takeRecoveryCodesDue(db: Db, interactionUid: string, userId: string): Promise<boolean> {
  const rows = await db('pending_logins')
    .where({ interaction_uid: interactionUid, user_id: userId, recovery_codes_due: true })
    .andWhere('expires_at', '>', db.fn.now())
    .update({ recovery_codes_due: false }, ['interaction_uid']);
  return rows.length === 1;
}

export async function clearPending(db: Db, interactionUid: string): Promise<void> {
  await db('pending_logins').where({ interaction_uid: interactionUid }).delete();
}
