// Accounts whose address was never verified are removed after UNVERIFIED_TTL (the
// `cleanup-unverified` job), except federated ones, together with their sessions and tokens. Rows that reference the
// user (session proofs, links, credentials, remembered consent) go with it by ON DELETE CASCADE.
import type { Knex } from 'knex';

export async function deleteStaleUnverifiedUsers(trx: Knex.Transaction, ttlSeconds: number, limit = 500): Promise<string[]> {
  const ids = (await trx('users')
    .where({ email_verified: false })
    // A federated user (SAML or SCIM) outside the connection's domains stays unverified by design:
    // the identity provider vouches for the person, and its account is not an abandoned sign-up.
    .whereNotExists(trx('saml_identities').select(trx.raw('1')).whereRaw('saml_identities.user_id = users.id'))
    .where('created_at', '<', trx.raw('now() - make_interval(secs => ?)', [ttlSeconds]))
    .orderBy('created_at')
    .limit(limit)
    .pluck('id')) as string[];
  if (ids.length === 0) return [];
  // oidc-provider artifacts (sessions, codes, tokens, grants, interactions) name the user by account_id.
  await trx('oidc_payloads').whereIn('account_id', ids).delete();
  await trx('users').whereIn('id', ids).delete();
  // Inside this transaction (the audit helper's own connection would wait on it under PGlite).
  await trx('audit_events').insert(ids.map((id) => ({ type: 'user.deleted', user_id: id, data: JSON.stringify({ reason: 'unverified', ttlSeconds }) })));
  return ids;
}
