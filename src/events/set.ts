// Security Event Tokens (RFC 8417) with the RISC account events
// (https://openid.net/specs/openid-risc-profile-specification-1_0.html): JWTs signed with the
// IdP's current signing key (its `kid` is in /jwks), `typ: secevent+jwt`, one event each.
import crypto from 'node:crypto';
import { importJWK, SignJWT } from 'jose';
import type { Db } from '../db/knex.ts';
import { loadSigningJwks } from '../oidc/keys.ts';

const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';

export const ACCOUNT_EVENTS = {
  'account-disabled': `${RISC}account-disabled`,
  'account-enabled': `${RISC}account-enabled`,
  'account-purged': `${RISC}account-purged`,
} as const;

export type AccountEvent = keyof typeof ACCOUNT_EVENTS;

/** What a SET says before it is signed (kept sealed in the outbox until delivery). */
export interface SetClaims {
  iss: string;
  aud: string;
  iat: number;
  jti: string;
  events: Record<string, Record<string, unknown>>;
}

export function accountEventClaims(issuer: string, clientId: string, event: AccountEvent, sub: string, extra: Record<string, unknown> = {}): SetClaims {
  return {
    iss: issuer,
    aud: clientId,
    iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(),
    events: { [ACCOUNT_EVENTS[event]]: { subject: { format: 'iss_sub', iss: issuer, sub }, ...extra } },
  };
}

/** Signs with the current RS256 key, the one the provider publishes first in /jwks. */
export async function signSet(db: Db, atRestKey: Buffer, claims: SetClaims): Promise<string> {
  const { keys } = await loadSigningJwks(db, atRestKey);
  const jwk = keys.find((k) => (k as { alg?: string }).alg === 'RS256') as (typeof keys)[number] & { kid: string; alg: string };
  if (!jwk) throw new Error('no RS256 signing key');
  const key = await importJWK(jwk as never, 'RS256');
  return new SignJWT({ ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: jwk.kid, typ: 'secevent+jwt' })
    .sign(key);
}
