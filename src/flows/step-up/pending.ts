// A sign-in that has proven some factors but not yet enough. Bound to the interaction uid:
// only the browser holding that interaction's cookie can continue it, and it is not a session.
import type { Db } from '../../db/knex.ts';
import type { Proof } from '../../oidc/assurance.ts';

export interface PendingLogin {
  userId: string;
  proofs: Proof[];
}

export async function savePending(db: Db, interactionUid: string, pending: PendingLogin, ttlSeconds: number): Promise<void> {
  const row = { interaction_uid: interactionUid, user_id: pending.userId, proofs: JSON.stringify(pending.proofs), expires_at: db.raw('now() + make_interval(secs => ?)', [ttlSeconds]) };
  await db('pending_logins').insert(row).onConflict('interaction_uid').merge(['user_id', 'proofs', 'expires_at']);
}

export async function loadPending(db: Db, interactionUid: string): Promise<PendingLogin | undefined> {
  const row = await db('pending_logins').where({ interaction_uid: interactionUid }).andWhere('expires_at', '>', db.fn.now()).first('user_id', 'proofs');
  return row ? { userId: row.user_id, proofs: row.proofs } : undefined;
}

export async function clearPending(db: Db, interactionUid: string): Promise<void> {
  await db('pending_logins').where({ interaction_uid: interactionUid }).delete();
}
