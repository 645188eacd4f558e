// The users table and its queries. Credentials are owned by methods/, not here.
import crypto from 'node:crypto';
import type { Db } from '../db/knex.ts';

export interface User {
  id: string;
  email: string;
  name: string | null;
  /** Profile picture URL (https), set on the account page. */
  picture?: string | null;
  email_verified: boolean;
  status: 'active' | 'disabled';
  password_hash: string | null;
  /** Bumped when the password is replaced (reset, change): browsers trusted before are no more. */
  credentials_version: number;
  created_at: Date;
  updated_at: Date;
}

export type PublicUser = Omit<User, 'password_hash' | 'credentials_version'>;

const PUBLIC_COLUMNS = ['id', 'email', 'name', 'email_verified', 'status', 'created_at', 'updated_at'] as const;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class EmailTakenError extends Error {
  constructor() {
    super('an account with this email already exists');
  }
}

export function normalizeEmail(email: string): string {
  return email.trim();
}

export async function findUserByEmail(db: Db, email: string): Promise<User | undefined> {
  return db<User>('users').whereRaw('lower(email) = lower(?)', [normalizeEmail(email)]).first();
}

export async function findUserById(db: Db, id: string): Promise<User | undefined> {
  if (!UUID_RE.test(id)) return undefined;
  return db<User>('users').where({ id }).first();
}

/**
 * The user when tokens may be issued for them: active and not waiting out a deletion's grace
 * period (account_deletions, see identity/deletion.ts). One query: the provider asks on every
 * token, refresh and userinfo request.
 */
export async function findActiveUser(db: Db, id: string): Promise<User | undefined> {
  if (!UUID_RE.test(id)) return undefined;
  return db<User>('users')
    .where({ id, status: 'active' })
    .whereNotExists(db('account_deletions').select(db.raw('1')).whereRaw('account_deletions.user_id = users.id'))
    .first();
}

export async function createUser(
  db: Db,
  input: { email: string; name?: string | null; passwordHash?: string | null; emailVerified?: boolean },
): Promise<PublicUser> {
  try {
    const [row] = await db('users')
      .insert({
        id: crypto.randomUUID(),
        email: normalizeEmail(input.email),
        name: input.name?.trim() || null,
        password_hash: input.passwordHash ?? null,
        email_verified: input.emailVerified ?? false,
      })
      .returning([...PUBLIC_COLUMNS]);
    return row as PublicUser;
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new EmailTakenError();
    throw err;
  }
}

/** Stores a re-hash of the same password (new argon2 parameters): nothing else changes. */
export async function setPasswordHash(db: Db, userId: string, passwordHash: string): Promise<void> {
  await db('users').where({ id: userId }).update({ password_hash: passwordHash, updated_at: db.fn.now() });
}

/** Replaces the password (reset, change): a new credential version, so device trust starts over. */
export async function replacePassword(db: Db, userId: string, passwordHash: string | null): Promise<void> {
  await db('users')
    .where({ id: userId })
    .update({ password_hash: passwordHash, credentials_version: db.raw('credentials_version + 1'), updated_at: db.fn.now() });
}

export async function listUsers(db: Db, { limit = 100, offset = 0 } = {}): Promise<PublicUser[]> {
  return db('users').select([...PUBLIC_COLUMNS]).orderBy('created_at', 'asc').limit(limit).offset(offset);
}
