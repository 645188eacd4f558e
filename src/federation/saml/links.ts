// Linking a SAML identity to an existing local account. Never by email alone: a SAML sign-in
// whose email belongs to an unlinked local account is parked here against its OIDC interaction;
// only when that account's owner has signed in locally in the same interaction (every factor
// the sign-in's state machine asks for) and confirmed is the (connection, NameID) link stored.
import type { Db } from '../../db/knex.ts';
import type { AssertionFacts } from './mapping.ts';

export interface PendingLink {
  interactionUid: string;
  connectionName: string;
  nameId: string;
  userId: string;
  facts: AssertionFacts;
}

export async function offerLink(db: Db, link: PendingLink, ttlSeconds: number): Promise<void> {
  const row = {
    interaction_uid: link.interactionUid,
    connection_name: link.connectionName,
    name_id: link.nameId,
    user_id: link.userId,
    facts: JSON.stringify(link.facts),
    expires_at: new Date(Date.now() + ttlSeconds * 1000),
  };
  await db('saml_pending_links').insert(row).onConflict('interaction_uid').merge();
}

export async function pendingLink(db: Db, interactionUid: string): Promise<PendingLink | undefined> {
  const row = await db('saml_pending_links').where({ interaction_uid: interactionUid }).where('expires_at', '>', db.fn.now()).first();
  return row ? { interactionUid, connectionName: row.connection_name, nameId: row.name_id, userId: row.user_id, facts: row.facts } : undefined;
}

/** Takes the offer out (once); undefined when it is gone, expired or for another user. */
export async function takeLink(db: Db, interactionUid: string, userId: string): Promise<PendingLink | undefined> {
  const rows = await db('saml_pending_links').where({ interaction_uid: interactionUid, user_id: userId }).where('expires_at', '>', db.fn.now()).delete('*');
  const row = rows[0];
  return row ? { interactionUid, connectionName: row.connection_name, nameId: row.name_id, userId: row.user_id, facts: row.facts } : undefined;
}

export async function dropLink(db: Db, interactionUid: string): Promise<void> {
  await db('saml_pending_links').where({ interaction_uid: interactionUid }).delete();
}

/** Stores the link; false when this NameID is linked already (to anyone). */
export async function storeLink(db: Db, link: PendingLink): Promise<boolean> {
  const rows = await db('saml_identities')
    .insert({ connection_name: link.connectionName, name_id: link.nameId, user_id: link.userId, groups: JSON.stringify([]) })
    .onConflict(['connection_name', 'name_id'])
    .ignore()
    .returning(['user_id']);
  return rows.length === 1;
}
