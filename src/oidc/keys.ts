// Signing keys live in the database, private parts sealed with the at-rest key.
// RS256 is mandatory for OIDC; ES256 is offered to clients that prefer it.
import crypto from 'node:crypto';
import type { Db } from '../db/knex.ts';
import { decrypt, encrypt, randomToken } from '../security/crypto.ts';

export const SIGNING_ALGS = ['RS256', 'ES256'] as const;
type SigningAlg = (typeof SIGNING_ALGS)[number];
const KEY_LOCK = 72_517_001; // advisory lock id for key generation/rotation

interface KeyRow {
  kid: string;
  alg: SigningAlg;
  public_jwk: crypto.JsonWebKey;
  private_jwk_enc: string;
  created_at: Date;
  rotated_at: Date | null;
  retire_after: Date | null;
}

function generate(alg: SigningAlg, atRestKey: Buffer) {
  const { privateKey, publicKey } =
    alg === 'RS256'
      ? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })
      : crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = randomToken(12);
  const meta = { kid, alg, use: 'sig' };
  return {
    kid,
    alg,
    public_jwk: JSON.stringify({ ...publicKey.export({ format: 'jwk' }), ...meta }),
    private_jwk_enc: encrypt(atRestKey, JSON.stringify({ ...privateKey.export({ format: 'jwk' }), ...meta }), `signing-key:${kid}`),
  };
}

/** Creates the current key for every algorithm that has none (first start). Idempotent across processes. */
export async function ensureSigningKeys(db: Db, atRestKey: Buffer): Promise<string[]> {
  return db.transaction(async (trx) => {
    await trx.raw('SELECT pg_advisory_xact_lock(?)', [KEY_LOCK]);
    const current = await trx<KeyRow>('signing_keys').whereNull('rotated_at').pluck('alg');
    const missing = SIGNING_ALGS.filter((alg) => !current.includes(alg));
    if (missing.length) await trx('signing_keys').insert(missing.map((alg) => generate(alg, atRestKey)));
    return missing;
  });
}

/**
 * Adds a new current key per algorithm. The previous keys stay published (so tokens they signed
 * still verify) until `retireAfterSeconds` has passed, then the sweep deletes them.
 */
export async function rotateSigningKeys(db: Db, atRestKey: Buffer, retireAfterSeconds: number) {
  return db.transaction(async (trx) => {
    await trx.raw('SELECT pg_advisory_xact_lock(?)', [KEY_LOCK]);
    const retireAfter = new Date(Date.now() + retireAfterSeconds * 1000);
    const rotated = await trx('signing_keys').whereNull('rotated_at').update({ rotated_at: trx.fn.now(), retire_after: retireAfter }, ['kid']);
    const created = SIGNING_ALGS.map((alg) => generate(alg, atRestKey));
    await trx('signing_keys').insert(created);
    return { rotated: rotated.map((r: { kid: string }) => r.kid), created: created.map((k) => ({ kid: k.kid, alg: k.alg })), retireAfter };
  });
}

/** Private JWKS for oidc-provider: current keys first (the first key of an alg signs), then retiring ones. */
export async function loadSigningJwks(db: Db, atRestKey: Buffer): Promise<{ keys: crypto.JsonWebKey[] }> {
  const rows = await db<KeyRow>('signing_keys')
    .where((q) => q.whereNull('retire_after').orWhere('retire_after', '>', db.fn.now()))
    .orderByRaw('rotated_at IS NOT NULL, created_at DESC');
  return { keys: rows.map((r) => JSON.parse(decrypt(atRestKey, r.private_jwk_enc, `signing-key:${r.kid}`))) };
}

/** A cheap fingerprint of the published key set, polled to notice rotations done by the CLI. */
export async function signingKeysVersion(db: Db): Promise<string> {
  const kids = await db('signing_keys')
    .where((q) => q.whereNull('retire_after').orWhere('retire_after', '>', db.fn.now()))
    .orderBy('kid')
    .pluck('kid');
  return kids.join(',');
}

export async function listSigningKeys(db: Db) {
  return db<KeyRow>('signing_keys').select('kid', 'alg', 'created_at', 'rotated_at', 'retire_after').orderBy('created_at', 'desc');
}

export async function deleteRetiredSigningKeys(db: Db): Promise<number> {
  return (await db('signing_keys').where('retire_after', '<=', db.fn.now()).delete(['kid'])).length;
}
