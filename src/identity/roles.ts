// A user's roles (granted by a federation's role map today) and the IdP groups they came from.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';

/** Replaces the user's roles with `roles`; returns what changed. */
export async function setUserRoles(trx: Knex.Transaction, userId: string, roles: string[]): Promise<{ added: string[]; removed: string[]; now: string[] }> {
  const wanted = [...new Set(roles)].sort();
  const current: string[] = (await trx('user_roles').where({ user_id: userId }).pluck('role')).sort();
  const added = wanted.filter((r) => !current.includes(r));
  const removed = current.filter((r) => !wanted.includes(r));
  if (removed.length) await trx('user_roles').where({ user_id: userId }).whereIn('role', removed).delete();
  if (added.length) await trx('user_roles').insert(added.map((role) => ({ user_id: userId, role })));
  return { added, removed, now: wanted };
}

/** Roles and IdP groups, for the `roles` scope's claims. */
export async function rolesAndGroups(db: Db, userId: string): Promise<{ roles: string[]; groups: string[] }> {
  const [roles, links, scimGroups] = await Promise.all([
    db('user_roles').where({ user_id: userId }).orderBy('role').pluck('role'),
    db('saml_identities').where({ user_id: userId }).select('groups'),
    // Groups a connection provisioned by SCIM count as the IdP's groups (src/scim/groups.ts).
    db('scim_group_members as m').join('scim_groups as g', 'g.id', 'm.group_id').where('m.user_id', userId).pluck('g.display_name'),
  ]);
  const groups = new Set<string>(scimGroups as string[]);
  for (const l of links) for (const g of (l.groups as string[]) ?? []) groups.add(g);
  return { roles, groups: [...groups].sort() };
}
