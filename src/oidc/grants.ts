// Remembered consent: which grant a user gave a third-party client, so a new session reuses it.
import type { Db } from '../db/knex.ts';

export async function findRememberedGrant(db: Db, userId: string, clientId: string): Promise<string | undefined> {
  const row = await db('remembered_grants').where({ user_id: userId, client_id: clientId }).first('grant_id');
  return row?.grant_id;
}

export async function rememberGrant(db: Db, userId: string, clientId: string, grantId: string): Promise<void> {
  await db('remembered_grants')
    .insert({ user_id: userId, client_id: clientId, grant_id: grantId })
    .onConflict(['user_id', 'client_id'])
    .merge({ grant_id: grantId, updated_at: db.fn.now() });
}
