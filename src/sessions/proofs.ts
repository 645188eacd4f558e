// Per-session record of proven factors with their times. oidc-provider's session keeps only
// the cumulative acr/amr; elevation expiry and "recent authentication" need each factor's time.
import type { Db } from '../db/knex.ts';
import type { Proof } from '../oidc/assurance.ts';

export interface SessionProofs {
  userId: string;
  proofs: Proof[];
}

export async function loadSessionProofs(db: Db, sessionUid: string): Promise<SessionProofs | undefined> {
  const row = await db('session_proofs').where({ session_uid: sessionUid }).first('user_id', 'proofs');
  return row ? { userId: row.user_id, proofs: row.proofs as Proof[] } : undefined;
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
