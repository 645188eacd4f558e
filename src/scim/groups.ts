// SCIM groups of one connection and their members (only users linked to that connection), and
// the roles they grant: a user's groups are those the last SAML assertion carried together with
// the connection's SCIM groups they are a member of, and the connection's role map turns them
// into roles exactly as it does for SAML groups (federation/saml/mapping.ts).
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import type { SamlConnection } from '../federation/saml/connections.ts';
import { rolesFor } from '../federation/saml/mapping.ts';
import { setUserRoles } from '../identity/roles.ts';
import { badRequest, ScimError } from './errors.ts';
import type { Comparison } from './filter.ts';

type Q = Db | Knex.Transaction;

export interface GroupRow {
  id: string;
  connection_name: string;
  display_name: string;
  external_id: string | null;
  created_at: Date;
  updated_at: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: unknown): s is string => typeof s === 'string' && UUID.test(s);

/** The SCIM group names of `connection` that the user linked by `nameId` belongs to. */
export async function scimGroupsForNameId(db: Q, connection: string, nameId: string): Promise<string[]> {
  return (await db('scim_group_members as m')
    .join('scim_groups as g', 'g.id', 'm.group_id')
    .join('saml_identities as i', 'i.user_id', 'm.user_id')
    .where({ 'g.connection_name': connection, 'i.connection_name': connection, 'i.name_id': nameId })
    .orderBy('g.display_name')
    .pluck('g.display_name')) as string[];
}

/** A SAML sign-in's groups plus the user's SCIM groups of the same connection (sorted, unique). */
export async function withScimGroups(db: Q, connection: string, nameId: string, assertionGroups: string[]): Promise<string[]> {
  return [...new Set([...assertionGroups, ...(await scimGroupsForNameId(db, connection, nameId))])].sort();
}

export interface RoleChange {
  userId: string;
  added: string[];
  removed: string[];
}

/** Recomputes the roles of `userIds` from their assertion groups and SCIM groups of `connection`. */
export async function recomputeRoles(trx: Knex.Transaction, connection: SamlConnection, userIds: string[]): Promise<RoleChange[]> {
  const changes: RoleChange[] = [];
  for (const userId of [...new Set(userIds)]) {
    const link = await trx('saml_identities').where({ connection_name: connection.name, user_id: userId }).first('groups');
    if (!link) continue;
    const scim = (await trx('scim_group_members as m')
      .join('scim_groups as g', 'g.id', 'm.group_id')
      .where({ 'g.connection_name': connection.name, 'm.user_id': userId })
      .pluck('g.display_name')) as string[];
    const groups = [...new Set([...((link.groups as string[]) ?? []), ...scim])];
    const result = await setUserRoles(trx, userId, rolesFor(groups, connection.roleMap, connection.defaultRole));
    if (result.added.length || result.removed.length) changes.push({ userId, added: result.added, removed: result.removed });
  }
  return changes;
}

export async function findGroup(db: Q, connection: string, id: string): Promise<GroupRow | undefined> {
  if (!isUuid(id)) return undefined;
  return db<GroupRow>('scim_groups').where({ connection_name: connection, id }).first();
}

export async function membersOf(db: Q, groupIds: string[]): Promise<Map<string, { userId: string; userName: string }[]>> {
  const map = new Map<string, { userId: string; userName: string }[]>();
  if (groupIds.length === 0) return map;
  const rows = await db('scim_group_members as m')
    .join('scim_groups as g', 'g.id', 'm.group_id')
    .leftJoin('saml_identities as i', function () {
      this.on('i.user_id', '=', 'm.user_id').andOn('i.connection_name', '=', 'g.connection_name');
    })
    .whereIn('m.group_id', groupIds)
    .orderBy(['m.group_id', 'i.name_id'])
    .select('m.group_id', 'm.user_id', 'i.name_id');
  for (const r of rows) map.set(r.group_id, [...(map.get(r.group_id) ?? []), { userId: r.user_id, userName: r.name_id ?? '' }]);
  return map;
}

export async function listGroups(db: Q, connection: string, filter: Comparison[], startIndex: number, count: number): Promise<{ rows: GroupRow[]; total: number }> {
  const query = db<GroupRow>('scim_groups').where({ connection_name: connection });
  for (const c of filter) {
    if (c.path === 'displayname' && typeof c.value === 'string') query.whereRaw('lower(display_name) = lower(?)', [c.value]);
    else if (c.path === 'externalid' && typeof c.value === 'string') query.where({ external_id: c.value });
    else if (c.path === 'id') {
      if (!isUuid(c.value)) return { rows: [], total: 0 };
      query.where({ id: c.value });
    } else if (c.path === 'members.value' || c.path === 'members') {
      if (!isUuid(c.value)) return { rows: [], total: 0 };
      query.whereIn('id', db('scim_group_members').where({ user_id: c.value }).select('group_id'));
    } else throw badRequest('invalidFilter', `Groups can be filtered by displayName, externalId, id or members.value, not ${c.path}.`);
  }
  const [counted] = await query.clone().clearSelect().count({ n: '*' });
  const rows = count === 0 ? [] : await query.orderBy([{ column: 'created_at' }, { column: 'id' }]).offset(startIndex - 1).limit(count);
  return { rows, total: Number(counted?.n ?? 0) };
}

/** The members given must be users linked to this connection: a connection never reaches other accounts. */
async function checkMembers(trx: Knex.Transaction, connection: string, ids: string[]): Promise<void> {
  const unique = [...new Set(ids)];
  if (unique.some((id) => !isUuid(id))) throw badRequest('invalidValue', 'A member is not a user of this connection.');
  if (unique.length === 0) return;
  const found = (await trx('saml_identities').where({ connection_name: connection }).whereIn('user_id', unique).pluck('user_id')) as string[];
  if (new Set(found).size !== unique.length) throw badRequest('invalidValue', 'A member is not a user of this connection.');
}

async function nameTaken(trx: Knex.Transaction, connection: string, displayName: string, exceptId?: string): Promise<boolean> {
  const q = trx('scim_groups').where({ connection_name: connection }).whereRaw('lower(display_name) = lower(?)', [displayName]);
  if (exceptId) q.whereNot({ id: exceptId });
  return Boolean(await q.first('id'));
}

export interface GroupInput {
  displayName: string;
  externalId: string | null;
  members: string[];
}

export interface GroupWrite {
  id: string;
  added: string[];
  removed: string[];
  roles: RoleChange[];
}

export async function createGroup(db: Db, connection: SamlConnection, input: GroupInput): Promise<GroupWrite> {
  return db.transaction(async (trx) => {
    if (await nameTaken(trx, connection.name, input.displayName)) throw new ScimError(409, 'A group with this displayName exists.', 'uniqueness');
    await checkMembers(trx, connection.name, input.members);
    const id = crypto.randomUUID();
    await trx('scim_groups').insert({ id, connection_name: connection.name, display_name: input.displayName, external_id: input.externalId });
    const members = [...new Set(input.members)];
    if (members.length) await trx('scim_group_members').insert(members.map((user_id) => ({ group_id: id, user_id })));
    return { id, added: members, removed: [], roles: await recomputeRoles(trx, connection, members) };
  });
}

/** Replaces the group's name, externalId and members; roles follow for everyone who joined or left. */
export async function replaceGroup(db: Db, connection: SamlConnection, id: string, input: GroupInput | ((current: GroupInput) => GroupInput)): Promise<GroupWrite> {
  return db.transaction(async (trx) => {
    const group = await trx<GroupRow>('scim_groups').where({ connection_name: connection.name, id }).forUpdate().first();
    if (!group) throw new ScimError(404, 'No such group.');
    const current = (await trx('scim_group_members').where({ group_id: id }).pluck('user_id')) as string[];
    const next = typeof input === 'function' ? input({ displayName: group.display_name, externalId: group.external_id, members: current }) : input;
    if (await nameTaken(trx, connection.name, next.displayName, id)) throw new ScimError(409, 'A group with this displayName exists.', 'uniqueness');
    const wanted = [...new Set(next.members)];
    const added = wanted.filter((u) => !current.includes(u));
    const removed = current.filter((u) => !wanted.includes(u));
    await checkMembers(trx, connection.name, added);
    await trx('scim_groups').where({ id }).update({ display_name: next.displayName, external_id: next.externalId, updated_at: trx.fn.now() });
    if (removed.length) await trx('scim_group_members').where({ group_id: id }).whereIn('user_id', removed).delete();
    if (added.length) await trx('scim_group_members').insert(added.map((user_id) => ({ group_id: id, user_id })));
    // A renamed group may map to other roles: everyone in it is recomputed.
    const affected = next.displayName !== group.display_name ? [...wanted, ...removed] : [...added, ...removed];
    return { id, added, removed, roles: await recomputeRoles(trx, connection, affected) };
  });
}

export async function deleteGroup(db: Db, connection: SamlConnection, id: string): Promise<GroupWrite | undefined> {
  return db.transaction(async (trx) => {
    const group = await trx('scim_groups').where({ connection_name: connection.name, id }).forUpdate().first('id');
    if (!group) return undefined;
    // The members go with the group (ON DELETE CASCADE): read them first, recompute after.
    const members = (await trx('scim_group_members').where({ group_id: id }).pluck('user_id')) as string[];
    await trx('scim_groups').where({ id }).delete();
    return { id, added: [], removed: members, roles: await recomputeRoles(trx, connection, members) };
  });
}
