// Step-up for resource servers (RFC 9470), importable from plain JavaScript:
//   import { createStepUpGuard } from 'latchkey/resource-server';
// It introspects a bearer token at Latchkey, checks the token's acr and auth_time against what
// the protected resource needs, and otherwise answers 401 with
//   WWW-Authenticate: Bearer error="insufficient_user_authentication", acr_values="…", max_age=…
// so the client can send the user back through Latchkey with those parameters.
// Only access tokens pass (a refresh token is not a bearer credential), and when the guard is
// given an `audience`, only tokens issued for it.

/** acr values from weakest to strongest; a request for one is met by any stronger one. */
export const DEFAULT_ACR_RANKING = ['urn:latchkey:acr:pwd', 'urn:latchkey:acr:mfa', 'urn:latchkey:acr:phr'];

function quote(value) {
  return `"${String(value).replace(/["\\]/g, '\\$&')}"`;
}

/** The WWW-Authenticate value for a challenge. */
export function bearerChallenge({ error, description, acrValues, maxAge }) {
  const parts = [`error=${quote(error)}`];
  if (description) parts.push(`error_description=${quote(description)}`);
  if (acrValues?.length) parts.push(`acr_values=${quote(acrValues.join(' '))}`);
  if (maxAge !== undefined) parts.push(`max_age=${Number(maxAge)}`);
  return `Bearer ${parts.join(', ')}`;
}

/**
 * Pure check of already-introspected token claims.
 * @param {{ active?: boolean, acr?: string, auth_time?: number }} claims
 * @param {{ acr?: string, maxAge?: number, ranking?: string[], now?: number }} requirement
 * @returns {{ ok: true } | { ok: false, status: 401, wwwAuthenticate: string, body: object }}
 */
export function checkAuthentication(claims, requirement = {}) {
  const ranking = requirement.ranking ?? DEFAULT_ACR_RANKING;
  const now = requirement.now ?? Math.floor(Date.now() / 1000);
  const fail = (error, description, extra = {}) => ({
    ok: false,
    status: 401,
    wwwAuthenticate: bearerChallenge({ error, description, ...extra }),
    body: { error, error_description: description },
  });
  if (!claims?.active) return fail('invalid_token', 'the access token is not active');
  if (requirement.acr) {
    const wanted = ranking.indexOf(requirement.acr);
    if (wanted < 0) throw new Error(`unknown acr ${requirement.acr}`);
    const have = ranking.indexOf(claims.acr);
    if (have < wanted) {
      return fail('insufficient_user_authentication', 'a stronger authentication is required', {
        acrValues: ranking.slice(wanted),
        maxAge: requirement.maxAge,
      });
    }
  }
  if (requirement.maxAge !== undefined) {
    if (typeof claims.auth_time !== 'number' || now - claims.auth_time > requirement.maxAge) {
      return fail('insufficient_user_authentication', 'a more recent authentication is required', {
        acrValues: requirement.acr ? ranking.slice(ranking.indexOf(requirement.acr)) : undefined,
        maxAge: requirement.maxAge,
      });
    }
  }
  return { ok: true };
}

/** Token types of access tokens in introspection answers; refresh tokens have none. */
const ACCESS_TOKEN_TYPES = new Set(['bearer', 'dpop']);

/**
 * Pure check that introspected claims describe an active access token for this resource server.
 * @param {{ active?: boolean, token_type?: string, aud?: string | string[] }} claims
 * @param {{ audience?: string | string[] }} options the token's `aud` must contain this (one of these, for an array, as in JWT libraries)
 * @returns {{ ok: true } | { ok: false, status: 401, wwwAuthenticate: string, body: object }}
 */
export function checkAccessToken(claims, { audience } = {}) {
  const fail = (description) => ({
    ok: false,
    status: 401,
    wwwAuthenticate: bearerChallenge({ error: 'invalid_token', description }),
    body: { error: 'invalid_token', error_description: description },
  });
  if (!claims?.active) return fail('the access token is not active');
  if (typeof claims.token_type !== 'string' || !ACCESS_TOKEN_TYPES.has(claims.token_type.toLowerCase())) {
    return fail('the token is not an access token');
  }
  if (audience !== undefined) {
    const wanted = Array.isArray(audience) ? audience : [audience];
    const aud = Array.isArray(claims.aud) ? claims.aud : claims.aud === undefined ? [] : [claims.aud];
    if (!wanted.some((a) => aud.includes(a))) return fail('the access token is not meant for this resource');
  }
  return { ok: true };
}

/**
 * A guard bound to one Latchkey issuer and a resource-server client (client_credentials client
 * allowed to introspect). `guard.check(authorizationHeader, requirement)` resolves to the check's
 * result plus the token claims; `guard.middleware(requirement)` is a node:http/Express-style
 * `(req, res, next)` handler that answers 401 itself.
 */
export function createStepUpGuard({ issuer, clientId, clientSecret, audience, ranking = DEFAULT_ACR_RANKING, fetchImpl = fetch }) {
  let introspectionEndpoint;
  async function endpoint() {
    if (!introspectionEndpoint) {
      const res = await fetchImpl(new URL('/.well-known/openid-configuration', issuer));
      if (!res.ok) throw new Error(`discovery failed: ${res.status}`);
      introspectionEndpoint = (await res.json()).introspection_endpoint;
    }
    return introspectionEndpoint;
  }

  async function introspect(token) {
    const res = await fetchImpl(await endpoint(), {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`,
      },
      body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
    });
    if (!res.ok) throw new Error(`introspection failed: ${res.status}`);
    return res.json();
  }

  async function check(authorization, requirement = {}) {
    const match = /^Bearer\s+([A-Za-z0-9\-._~+/]+=*)$/i.exec(authorization ?? '');
    if (!match) {
      return { ok: false, status: 401, wwwAuthenticate: 'Bearer', body: { error: 'invalid_request', error_description: 'a bearer token is required' } };
    }
    const claims = await introspect(match[1]);
    const token = checkAccessToken(claims, { audience });
    if (!token.ok) return { ...token, claims };
    return { ...checkAuthentication(claims, { ...requirement, ranking }), claims };
  }

  function middleware(requirement = {}) {
    return async (req, res, next) => {
      try {
        const result = await check(req.headers.authorization, requirement);
        if (result.ok) {
          req.latchkey = result.claims;
          return next();
        }
        res.statusCode = result.status;
        res.setHeader('WWW-Authenticate', result.wwwAuthenticate);
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify(result.body));
      } catch (err) {
        next(err);
      }
    };
  }

  return { check, middleware, introspect };
}
