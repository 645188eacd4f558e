// Just-in-time provisioning: the (connection, NameID) link finds the user; the first sign-in
// creates one. An existing local account is never linked by email alone (whoever controls the
// IdP could otherwise take over any account with an address at any domain). Each sign-in
// refreshes the profile and recomputes roles from the IdP's groups; roles the map no longer
// grants are removed.
import type { Knex } from 'knex';
import type { Db } from '../../db/knex.ts';
import { findUserByEmail, normalizeEmail, type User } from '../../identity/users.ts';
import type { SamlConnection } from './connections.ts';
import type { MappedProfile } from './mapping.ts';
import { setUserRoles } from '../../identity/roles.ts';

export type ProvisionOutcome =
  | { kind: 'ok'; userId: string; created: boolean; roles: { added: string[]; removed: string[]; now: string[] } }
  | { kind: 'refused'; reason: 'deactivated' | 'no_email' }
  /** The email belongs to this unlinked local account: only its owner can link it (flows/saml). */
  | { kind: 'email_taken'; userId: string };

function domainOf(email: string): string {
  return email.split('@').pop()!.toLowerCase();
}

async function emailOwner(trx: Knex.Transaction, email: string): Promise<User | undefined> {
  return findUserByEmail(trx as unknown as Db, email);
}

async function emailFree(trx: Knex.Transaction, email: string, userId?: string): Promise<boolean> {
  const other = await emailOwner(trx, email);
  return !other || other.id === userId;
}

export async function provisionUser(
  db: Db,
  input: { connection: SamlConnection; nameId: string; profile: MappedProfile; roles: string[] },
): Promise<ProvisionOutcome> {
  const { connection, nameId, profile } = input;
  const verified = (email: string) => connection.domains.includes(domainOf(email));
  return db.transaction(async (trx) => {
    const link = await trx('saml_identities').where({ connection_name: connection.name, name_id: nameId }).forUpdate().first('user_id');
    let userId: string;
    let created = false;
    if (link) {
      const user = await trx<User>('users').where({ id: link.user_id }).first();
      if (!user || user.status !== 'active') return { kind: 'refused', reason: 'deactivated' } as const;
      userId = user.id;
      const changes: Record<string, unknown> = {};
      if (profile.name && profile.name !== user.name) changes.name = profile.name;
      // A new address from the IdP is taken over only when nobody else has it.
      if (profile.email && profile.email.toLowerCase() !== user.email.toLowerCase() && (await emailFree(trx, profile.email, user.id))) {
        changes.email = normalizeEmail(profile.email);
        changes.email_verified = verified(profile.email);
      }
      if (Object.keys(changes).length) await trx('users').where({ id: user.id }).update({ ...changes, updated_at: trx.fn.now() });
      await trx('saml_identities')
        .where({ connection_name: connection.name, name_id: nameId })
        .update({ groups: JSON.stringify(profile.groups), last_login_at: trx.fn.now() });
    } else {
      if (!profile.email) return { kind: 'refused', reason: 'no_email' } as const;
      const owner = await emailOwner(trx, profile.email);
      if (owner) return owner.status === 'active' ? ({ kind: 'email_taken', userId: owner.id } as const) : ({ kind: 'refused', reason: 'deactivated' } as const);
      const [row] = await trx('users')
        .insert({ id: crypto.randomUUID(), email: normalizeEmail(profile.email), name: profile.name, email_verified: verified(profile.email), password_hash: null })
        .returning(['id']);
      userId = row.id;
      created = true;
      await trx('saml_identities').insert({ connection_name: connection.name, name_id: nameId, user_id: userId, groups: JSON.stringify(profile.groups), last_login_at: trx.fn.now() });
    }
    const roles = await setUserRoles(trx, userId, input.roles);
    return { kind: 'ok', userId, created, roles } as const;
  });
}
