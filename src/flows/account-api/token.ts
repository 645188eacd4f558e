// Bearer tokens for the Account API: JWT access tokens (RFC 9068) that oidc-provider issued for
// the resource `<ISSUER>/api/account` (RFC 8707). Verified with the provider's own published
// keys (the signing_keys table behind /jwks), then checked against the database: the grant the
// token was issued under must still exist (removing an application's access, a reused refresh
// token or a deletion revokes it, and the token stops working at once), and so must the user.
import { createLocalJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import type { Db } from '../../db/knex.ts';
import { findUserById, type User } from '../../identity/users.ts';
import { isDeletionScheduled } from '../../identity/deletion.ts';
import { accountApiAudience } from '../../oidc/provider.ts';

export interface AccountApiToken {
  user: User;
  clientId: string;
  scopes: Set<string>;
  /** Epoch seconds of the user's authentication behind the token (RFC 9470), when known. */
  authTime: number | undefined;
  acr: string | undefined;
  claims: JWTPayload;
}

/** A failed bearer check: the status and the RFC 6750 / RFC 9470 challenge to send. */
export class BearerError extends Error {
  status: number;
  code: string | undefined;
  params: Record<string, string | number>;
  constructor(status: number, code: string | undefined, description: string, params: Record<string, string | number> = {}) {
    super(description);
    this.status = status;
    this.code = code;
    this.params = params;
  }

  /** `Bearer error="…", error_description="…", …` */
  challenge(): string {
    const parts: string[] = [];
    if (this.code) parts.push(`error="${this.code}"`, `error_description="${this.message.replace(/["\\]/g, '')}"`);
    for (const [k, v] of Object.entries(this.params)) parts.push(typeof v === 'number' ? `${k}=${v}` : `${k}="${v}"`);
    return parts.length ? `Bearer ${parts.join(', ')}` : 'Bearer';
  }
}

const KEYS_TTL_MS = 60_000;
// An unknown kid reloads the keys (a rotation done by another process), at most this often.
const RELOAD_MIN_MS = 5_000;

export function createAccountApiVerifier(db: Db, issuer: string) {
  const audience = accountApiAudience(issuer);
  let keys: { set: ReturnType<typeof createLocalJWKSet>; kids: Set<string>; loadedAt: number } | undefined;

  async function loadKeys() {
    const rows = (await db('signing_keys')
      .where((q) => q.whereNull('retire_after').orWhere('retire_after', '>', db.fn.now()))
      .select('public_jwk')) as { public_jwk: string | Record<string, unknown> }[];
    const jwks = { keys: rows.map((r) => (typeof r.public_jwk === 'string' ? JSON.parse(r.public_jwk) : r.public_jwk)) } as JSONWebKeySet;
    keys = { set: createLocalJWKSet(jwks), kids: new Set(jwks.keys.map((k) => k.kid!)), loadedAt: Date.now() };
    return keys;
  }

  async function keysFor(kid: string | undefined) {
    const age = keys ? Date.now() - keys.loadedAt : Infinity;
    if (!keys || age > KEYS_TTL_MS || (kid && !keys.kids.has(kid) && age > RELOAD_MIN_MS)) return loadKeys();
    return keys;
  }

  function kidOf(jwt: string): string | undefined {
    try {
      const header = JSON.parse(Buffer.from(jwt.split('.')[0] ?? '', 'base64url').toString('utf8')) as { kid?: unknown };
      return typeof header.kid === 'string' ? header.kid : undefined;
    } catch {
      return undefined;
    }
  }

  /** The verified token from an `Authorization: Bearer …` header, or a BearerError. */
  async function verify(authorization: string | undefined): Promise<AccountApiToken> {
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(authorization ?? '');
    // No credentials at all: a bare challenge (RFC 6750 §3.1).
    if (!match) throw new BearerError(401, authorization ? 'invalid_request' : undefined, 'Send an access token in the Authorization header: Bearer <token>.');
    const jwt = match[1]!;
    let claims: JWTPayload;
    try {
      const { set } = await keysFor(kidOf(jwt));
      ({ payload: claims } = await jwtVerify(jwt, set, { issuer, audience, typ: 'at+jwt', algorithms: ['RS256', 'ES256'], requiredClaims: ['exp', 'sub', 'client_id'] }));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) throw new BearerError(401, 'invalid_token', 'The access token has expired.');
      if (err instanceof joseErrors.JWTClaimValidationFailed && err.claim === 'aud') throw new BearerError(401, 'invalid_token', `The access token is not for this API: request it with resource=${audience}.`);
      if (err instanceof joseErrors.JOSEError) throw new BearerError(401, 'invalid_token', 'The access token is not valid.');
      throw err;
    }
    const grantRef = typeof claims.grant_ref === 'string' ? claims.grant_ref : undefined;
    const grant = grantRef
      ? await db('oidc_payloads')
          .where({ model: 'Grant', id_hash: grantRef })
          .where((q) => q.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()))
          .first('account_id', 'client_id')
      : undefined;
    if (!grant || grant.account_id !== claims.sub || grant.client_id !== claims.client_id) throw new BearerError(401, 'invalid_token', 'The access token was revoked.');
    const user = await findUserById(db, String(claims.sub));
    if (!user || user.status !== 'active' || (await isDeletionScheduled(db, user.id))) throw new BearerError(401, 'invalid_token', 'The account behind this access token is not active.');
    return {
      user,
      clientId: String(claims.client_id),
      scopes: new Set(typeof claims.scope === 'string' ? claims.scope.split(' ') : []),
      authTime: typeof claims.auth_time === 'number' ? claims.auth_time : undefined,
      acr: typeof claims.acr === 'string' ? claims.acr : undefined,
      claims,
    };
  }

  return { verify, audience };
}

export type AccountApiVerifier = ReturnType<typeof createAccountApiVerifier>;
