// A connection's SCIM bearer token: 256 random bits, shown once, stored only as its SHA-256.
// A new token replaces the previous one at once.
import crypto from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { randomToken, sha256Hex } from '../security/crypto.ts';

// A recognisable prefix lets secret scanners find leaked tokens.
const PREFIX = 'lkscim_';
const SHAPE = /^lkscim_[A-Za-z0-9_-]{43}$/;
// Compared against when the connection has no token, so both cases cost the same.
const NO_TOKEN = sha256Hex('no token');

export async function issueScimToken(db: Db, connection: string): Promise<string> {
  const token = PREFIX + randomToken(32);
  await db('scim_tokens')
    .insert({ connection_name: connection, token_hash: sha256Hex(token) })
    .onConflict('connection_name')
    .merge({ token_hash: sha256Hex(token), created_at: db.fn.now() });
  return token;
}

/** True when `presented` is `connection`'s current token (compared in constant time). */
export async function verifyScimToken(db: Db, connection: string | undefined, presented: string): Promise<boolean> {
  const row = connection ? await db('scim_tokens').where({ connection_name: connection }).first('token_hash') : undefined;
  const expected = Buffer.from((row?.token_hash as string | undefined) ?? NO_TOKEN, 'hex');
  const given = Buffer.from(sha256Hex(presented), 'hex');
  return crypto.timingSafeEqual(expected, given) && Boolean(row) && SHAPE.test(presented);
}
