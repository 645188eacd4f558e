// SCIM users of one connection. A SCIM user is the (connection, NameID) link of
// saml_identities, the same row SAML just-in-time provisioning finds: userName IS the NameID
// (matched exactly by sign-in, case-insensitively for uniqueness here), the SCIM id is the user's
// id (the OIDC `sub`). What SCIM says beyond the users table (externalId, name parts) is kept in
// scim_users. As in JIT, an existing account is never taken over by email: a userName or email
// that belongs to someone else is a 409.
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import type { SamlConnection } from '../federation/saml/connections.ts';
import { setUserRoles } from '../identity/roles.ts';
import { normalizeEmail } from '../identity/users.ts';
import { badRequest, ScimError } from './errors.ts';
import type { Comparison } from './filter.ts';
import { isUuid, recomputeRoles, type RoleChange } from './groups.ts';
import type { UserBody } from './schemas.ts';

type Q = Db | Knex.Transaction;

export interface UserRow {
  id: string;
  email: string;
  name: string | null;
  status: 'active' | 'disabled';
  created_at: Date;
  updated_at: Date;
  name_id: string;
  linked_at: Date;
  external_id: string | null;
  given_name: string | null;
  family_name: string | null;
  scim_updated_at: Date | null;
}

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function baseQuery(db: Q, connection: string) {
  return db('saml_identities as i')
    .join('users as u', 'u.id', 'i.user_id')
    .leftJoin('scim_users as s', function () {
      this.on('s.user_id', '=', 'i.user_id').andOn('s.connection_name', '=', 'i.connection_name');
    })
    .where('i.connection_name', connection);
}

const COLUMNS = ['u.id', 'u.email', 'u.name', 'u.status', 'u.created_at', 'u.updated_at', 'i.name_id', 'i.created_at as linked_at', 's.external_id', 's.given_name', 's.family_name', 's.updated_at as scim_updated_at'];

export async function findUser(db: Q, connection: string, id: string): Promise<UserRow | undefined> {
  if (!isUuid(id)) return undefined;
  return baseQuery(db, connection).where('u.id', id).first(COLUMNS);
}

export async function listUsers(db: Q, connection: string, filter: Comparison[], startIndex: number, count: number): Promise<{ rows: UserRow[]; total: number }> {
  const query = baseQuery(db, connection);
  for (const c of filter) {
    const s = typeof c.value === 'string' ? c.value : undefined;
    if (c.path === 'username' && s !== undefined) query.whereRaw('lower(i.name_id) = lower(?)', [s]);
    else if (c.path === 'externalid' && s !== undefined) query.where('s.external_id', s);
    else if ((c.path === 'emails.value' || c.path === 'emails') && s !== undefined) query.whereRaw('lower(u.email) = lower(?)', [s]);
    else if (c.path === 'displayname' && s !== undefined) query.where('u.name', s);
    else if (c.path === 'active' && typeof c.value === 'boolean') query.where('u.status', c.value ? 'active' : 'disabled');
    else if (c.path === 'id') {
      if (!isUuid(c.value)) return { rows: [], total: 0 };
      query.where('u.id', c.value);
    } else throw badRequest('invalidFilter', `Users can be filtered by userName, externalId, emails.value, displayName, active or id, not ${c.path}.`);
  }
  const [counted] = await query.clone().count({ n: '*' });
  const rows = count === 0 ? [] : await query.orderBy([{ column: 'i.created_at' }, { column: 'u.id' }]).offset(startIndex - 1).limit(count).select(COLUMNS);
  return { rows, total: Number(counted?.n ?? 0) };
}

/** The connection's groups each user is in: id and displayName. */
export async function groupsOfUsers(db: Q, connection: string, userIds: string[]): Promise<Map<string, { id: string; displayName: string }[]>> {
  const map = new Map<string, { id: string; displayName: string }[]>();
  if (userIds.length === 0) return map;
  const rows = await db('scim_group_members as m')
    .join('scim_groups as g', 'g.id', 'm.group_id')
    .where('g.connection_name', connection)
    .whereIn('m.user_id', userIds)
    .orderBy('g.display_name')
    .select('m.user_id', 'g.id', 'g.display_name');
  for (const r of rows) map.set(r.user_id, [...(map.get(r.user_id) ?? []), { id: r.id, displayName: r.display_name }]);
  return map;
}

/** What a request body means for our tables. */
export interface UserInput {
  userName: string;
  externalId: string | null;
  givenName: string | null;
  familyName: string | null;
  /** users.name: displayName, else name.formatted, else given + family. */
  displayName: string | null;
  email: string;
  active: boolean | undefined;
}

export function userInput(body: UserBody): UserInput {
  const emails = body.emails ?? [];
  const primary = emails.find((e) => e.primary === true) ?? emails.find((e) => e.type?.toLowerCase() === 'work') ?? emails[0];
  // Without an email attribute, a userName that is an address is the address (as a NameID is in JIT).
  const email = primary?.value ?? (EMAIL.test(body.userName) ? body.userName : undefined);
  if (!email) throw badRequest('invalidValue', 'emails: a user needs an email address.');
  if (!EMAIL.test(email)) throw badRequest('invalidValue', 'emails: not an email address.');
  const givenName = body.name?.givenName || null;
  const familyName = body.name?.familyName || null;
  const displayName = body.displayName || body.name?.formatted || [givenName, familyName].filter(Boolean).join(' ') || null;
  return { userName: body.userName, externalId: body.externalId || null, givenName, familyName, displayName, email: normalizeEmail(email), active: body.active };
}

/** A stored user as a PATCH starts from it (the writable attributes, as a client would send them). */
export function userState(row: UserRow): Record<string, unknown> & { emails: Record<string, unknown>[] } {
  // A name made of the parts follows them when a PATCH changes a part.
  const derived = row.name !== null && row.name === [row.given_name, row.family_name].filter(Boolean).join(' ');
  const shown = derived ? null : row.name;
  return {
    schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
    userName: row.name_id,
    externalId: row.external_id,
    name: { givenName: row.given_name, familyName: row.family_name, formatted: shown },
    displayName: shown,
    emails: [{ value: row.email, type: 'work', primary: true }],
    active: row.status === 'active',
  };
}

const domainOf = (email: string) => email.split('@').pop()!.toLowerCase();

async function checkUnique(trx: Knex.Transaction, connection: string, input: UserInput, userId?: string) {
  const sameName = trx('saml_identities').where({ connection_name: connection }).whereRaw('lower(name_id) = lower(?)', [input.userName]);
  if (userId) sameName.whereNot({ user_id: userId });
  if (await sameName.first('user_id')) throw new ScimError(409, 'A user with this userName exists.', 'uniqueness');
  const sameEmail = trx('users').whereRaw('lower(email) = lower(?)', [input.email]);
  if (userId) sameEmail.whereNot({ id: userId });
  // Never linked by email alone: an account with this address that is not this link is someone else's.
  if (await sameEmail.first('id')) throw new ScimError(409, 'An account with this email address exists and is not linked to this connection.', 'uniqueness');
}

export interface UserWrite {
  userId: string;
  roles: RoleChange[];
  /** The account's status changed by this write. */
  statusChange: 'deactivated' | 'reactivated' | null;
  /** Names of the attributes that changed (for the audit trail; no values). */
  changed: string[];
}

export async function createScimUser(db: Db, connection: SamlConnection, input: UserInput): Promise<UserWrite> {
  return db.transaction(async (trx) => {
    await checkUnique(trx, connection.name, input);
    const userId = crypto.randomUUID();
    const active = input.active ?? true;
    try {
      await trx('users').insert({
        id: userId,
        email: input.email,
        name: input.displayName,
        // Verified only when the connection owns the address's domain (as in JIT).
        email_verified: connection.domains.includes(domainOf(input.email)),
        status: active ? 'active' : 'disabled',
        password_hash: null,
      });
      await trx('saml_identities').insert({ connection_name: connection.name, name_id: input.userName, user_id: userId, groups: JSON.stringify([]) });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new ScimError(409, 'A user with this userName or email exists.', 'uniqueness');
      throw err;
    }
    await trx('scim_users').insert({ connection_name: connection.name, user_id: userId, external_id: input.externalId, given_name: input.givenName, family_name: input.familyName });
    return { userId, roles: await recomputeRoles(trx, connection, [userId]), statusChange: null, changed: [] };
  });
}

/** Replaces what SCIM controls of the user (PUT, and the result of a PATCH). `active` omitted keeps the status. */
export async function replaceScimUser(db: Db, connection: SamlConnection, userId: string, input: UserInput): Promise<UserWrite> {
  return db.transaction(async (trx) => {
    const link = await trx('saml_identities').where({ connection_name: connection.name, user_id: userId }).forUpdate().first('name_id');
    if (!link) throw new ScimError(404, 'No such user.');
    const user = await trx('users').where({ id: userId }).forUpdate().first('email', 'name', 'status');
    const scim = await trx('scim_users').where({ connection_name: connection.name, user_id: userId }).first('external_id', 'given_name', 'family_name');
    await checkUnique(trx, connection.name, input, userId);
    const changed: string[] = [];
    const userChanges: Record<string, unknown> = {};
    if (input.email.toLowerCase() !== String(user.email).toLowerCase()) {
      userChanges.email = input.email;
      userChanges.email_verified = connection.domains.includes(domainOf(input.email));
      changed.push('emails');
    }
    if (input.displayName !== user.name) {
      userChanges.name = input.displayName;
      changed.push('displayName');
    }
    let statusChange: UserWrite['statusChange'] = null;
    if (input.active !== undefined && input.active !== (user.status === 'active')) {
      userChanges.status = input.active ? 'active' : 'disabled';
      statusChange = input.active ? 'reactivated' : 'deactivated';
      changed.push('active');
    }
    if (Object.keys(userChanges).length) {
      try {
        await trx('users').where({ id: userId }).update({ ...userChanges, updated_at: trx.fn.now() });
      } catch (err) {
        if ((err as { code?: string }).code === '23505') throw new ScimError(409, 'An account with this email address exists.', 'uniqueness');
        throw err;
      }
    }
    if (input.userName !== link.name_id) {
      await trx('saml_identities').where({ connection_name: connection.name, user_id: userId }).update({ name_id: input.userName });
      changed.push('userName');
    }
    if ((scim?.external_id ?? null) !== input.externalId) changed.push('externalId');
    if ((scim?.given_name ?? null) !== input.givenName || (scim?.family_name ?? null) !== input.familyName) changed.push('name');
    await trx('scim_users')
      .insert({ connection_name: connection.name, user_id: userId, external_id: input.externalId, given_name: input.givenName, family_name: input.familyName })
      .onConflict(['connection_name', 'user_id'])
      .merge({ external_id: input.externalId, given_name: input.givenName, family_name: input.familyName, updated_at: trx.fn.now() });
    return { userId, roles: [], statusChange, changed: [...new Set(changed)] };
  });
}

/**
 * Removes the user from this connection. The account itself goes (purged, as `users delete
 * --now` does) only when it is this connection's alone: no password and no other link.
 */
export async function unlinkScimUser(db: Db, connection: SamlConnection, userId: string): Promise<{ purge: boolean } | undefined> {
  return db.transaction(async (trx) => {
    const [link] = await trx('saml_identities').where({ connection_name: connection.name, user_id: userId }).delete(['user_id']);
    if (!link) return undefined;
    await trx('scim_users').where({ connection_name: connection.name, user_id: userId }).delete();
    await trx('scim_group_members').where({ user_id: userId }).whereIn('group_id', trx('scim_groups').where({ connection_name: connection.name }).select('id')).delete();
    const user = await trx('users').where({ id: userId }).first('password_hash');
    const otherLinks = await trx('saml_identities').where({ user_id: userId }).first('connection_name');
    if (!user?.password_hash && !otherLinks) return { purge: true };
    // Roles this connection granted go with the link (another connection's next sign-in sets its own).
    if (!otherLinks) await setUserRoles(trx, userId, []);
    return { purge: false };
  });
}
