// The one token scheme behind every emailed link (verification, password reset, magic link,
// email change). A link carries 32 random bytes (base64url); the database keeps only their
// SHA-256, so a dump of it opens nothing. A token is bound to its purpose and its user (and,
// where set, to the address the user had when it was issued), expires per purpose, and is spent
// by one atomic UPDATE: of two concurrent uses exactly one wins.
import type { Knex } from 'knex';
import type { Db } from '../db/knex.ts';
import { constantTimeEqual, randomToken, sha256Hex } from './crypto.ts';

export type LinkPurpose = 'verify-email' | 'reset-password' | 'magic-link' | 'email-change' | 'email-change-report';

export interface LinkToken {
  id: number;
  purpose: LinkPurpose;
  userId: string | null;
  boundEmail: string | null;
  data: Record<string, unknown>;
  expiresAt: Date;
  consumedAt: Date | null;
}

/** What a link's holder is told when it does not work. */
export type LinkState = { state: 'valid'; token: LinkToken } | { state: 'used' | 'expired'; token: LinkToken } | { state: 'unknown' };

interface Row {
  id: number | string;
  token_hash: string;
  purpose: LinkPurpose;
  user_id: string | null;
  bound_email: string | null;
  data: Record<string, unknown>;
  expires_at: Date;
  consumed_at: Date | null;
}

const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/; // 32 bytes, base64url without padding

function fromRow(row: Row): LinkToken {
  return {
    id: Number(row.id),
    purpose: row.purpose,
    userId: row.user_id,
    boundEmail: row.bound_email,
    data: row.data ?? {},
    expiresAt: row.expires_at,
    consumedAt: row.consumed_at,
  };
}

/** The hash a token is stored and found under; also used to hash browser-binding secrets. */
export function tokenHash(token: string): string {
  return sha256Hex(token);
}

export async function issueLinkToken(
  db: Db | Knex.Transaction,
  input: { purpose: LinkPurpose; userId: string | null; boundEmail?: string | null; data?: Record<string, unknown>; ttlSeconds: number },
): Promise<string> {
  const token = randomToken(32);
  await db('link_tokens').insert({
    token_hash: tokenHash(token),
    purpose: input.purpose,
    user_id: input.userId,
    bound_email: input.boundEmail ?? null,
    data: JSON.stringify(input.data ?? {}),
    expires_at: db.raw('now() + make_interval(secs => ?)', [input.ttlSeconds]),
  });
  return token;
}

// The token's user must still exist and, when the token is bound to an address, still have it.
const STILL_BOUND = `(link_tokens.user_id IS NULL OR EXISTS (
  SELECT 1 FROM users u WHERE u.id = link_tokens.user_id AND u.status = 'active'
   AND (link_tokens.bound_email IS NULL OR lower(u.email) = lower(link_tokens.bound_email))))`;

async function find(db: Db | Knex.Transaction, token: unknown, purpose: LinkPurpose): Promise<(Row & { live: boolean; bound: boolean }) | undefined> {
  if (typeof token !== 'string' || !TOKEN_RE.test(token)) return undefined;
  const hash = tokenHash(token);
  const row = (await db('link_tokens')
    .where({ token_hash: hash, purpose })
    .first('*', db.raw('expires_at > now() AS live'), db.raw(`${STILL_BOUND} AS bound`))) as (Row & { live: boolean; bound: boolean }) | undefined;
  // The index lookup found it by hash; compare again without a timing side channel.
  if (!row || !constantTimeEqual(row.token_hash, hash)) return undefined;
  return row;
}

/**
 * Looks a link up without spending it (a GET of the link must not consume it: mail scanners
 * prefetch links). An unspent link whose address binding broke counts as unknown.
 */
export async function inspectLinkToken(db: Db | Knex.Transaction, token: unknown, purpose: LinkPurpose): Promise<LinkState> {
  const row = await find(db, token, purpose);
  if (!row) return { state: 'unknown' };
  if (row.consumed_at) return { state: 'used', token: fromRow(row) };
  if (!row.bound) return { state: 'unknown' };
  if (!row.live) return { state: 'expired', token: fromRow(row) };
  return { state: 'valid', token: fromRow(row) };
}

/**
 * Spends a link: one UPDATE that succeeds only while it is unspent, unexpired, of this purpose
 * and still bound to its user's address. `where` adds conditions on `data` (e.g. the interaction
 * it belongs to). Returns the token, or undefined when it cannot be used (any reason).
 */
export async function consumeLinkToken(
  db: Db | Knex.Transaction,
  token: unknown,
  purpose: LinkPurpose,
  where: Record<string, string> = {},
): Promise<LinkToken | undefined> {
  if (typeof token !== 'string' || !TOKEN_RE.test(token)) return undefined;
  const hash = tokenHash(token);
  let query = db('link_tokens')
    .where({ token_hash: hash, purpose })
    .whereNull('consumed_at')
    .where('expires_at', '>', db.fn.now())
    .whereRaw(STILL_BOUND);
  for (const [key, value] of Object.entries(where)) query = query.whereRaw('data ->> ? = ?', [key, value]);
  const rows = (await query.update({ consumed_at: db.fn.now() }, '*')) as Row[];
  const row = rows[0];
  if (!row || !constantTimeEqual(row.token_hash, hash)) return undefined;
  return fromRow(row);
}

/** Spends every open link of these purposes for a user (a newer link or a completed action replaces them). */
export async function revokeLinkTokens(db: Db | Knex.Transaction, userId: string, purposes: LinkPurpose[]): Promise<number> {
  const rows = await db('link_tokens')
    .where({ user_id: userId })
    .whereIn('purpose', purposes)
    .whereNull('consumed_at')
    .update({ consumed_at: db.fn.now() }, ['id']);
  return rows.length;
}

/** The newest open link of a purpose for a user (e.g. a pending email change), if any. */
export async function openLinkToken(db: Db | Knex.Transaction, userId: string, purpose: LinkPurpose): Promise<LinkToken | undefined> {
  const row = (await db('link_tokens')
    .where({ user_id: userId, purpose })
    .whereNull('consumed_at')
    .where('expires_at', '>', db.fn.now())
    .orderBy('id', 'desc')
    .first()) as Row | undefined;
  return row ? fromRow(row) : undefined;
}

/** Deletes links that expired more than a day ago (spent or not). Returns rows removed. */
export async function purgeExpiredLinkTokens(db: Db | Knex.Transaction, limit = 1000): Promise<number> {
  const rows = await db('link_tokens')
    .whereIn('id', db('link_tokens').select('id').where('expires_at', '<', db.raw("now() - interval '1 day'")).limit(limit))
    .delete(['id']);
  return rows.length;
}
