// Per-session record of proven factors with their times. oidc-provider's session keeps only
// the cumulative acr/amr; elevation expiry and "recent authentication" need each factor's time.
import type { Db } from '../db/knex.ts';
import type { Proof } from '../assurance/index.ts';

/**
 * What session `sessionUid` has proven for `userId`; nothing when the session belongs to someone
 * else (a session that changed hands never lends its proofs to the new user).
 */
export async function loadSessionProofs(db: Db, sessionUid: string, userId: string): Promise<Proof[]> {
  const row = await db('session_proofs').where({ session_uid: sessionUid }).first('user_id', 'proofs');
  return row?.user_id === userId ? (row.proofs as Proof[]) : [];
}

export async function saveSessionProofs(db: Db, sessionUid: string, userId: string, proofs: Proof[]): Promise<void> {
  await db('session_proofs')
    .insert({ session_uid: sessionUid, user_id: userId, proofs: JSON.stringify(proofs) })
    .onConflict('session_uid')
    .merge({ user_id: userId, proofs: JSON.stringify(proofs), updated_at: db.fn.now() });
}

/** Adds new proofs to earlier ones: a method proven again replaces its older proof. */
export function mergeProofs(earlier: Proof[], added: Proof[]): Proof[] {
  const replaced = new Set(added.map((p) => p.method));
  return [...earlier.filter((p) => !replaced.has(p.method)), ...added];
}
