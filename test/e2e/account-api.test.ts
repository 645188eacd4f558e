// The Account API (/api/account) as an openid-client relying party uses it: tokens requested with
// resource=<ISSUER>/api/account (RFC 8707) are JWTs for that audience signed with the IdP's keys;
// only clients registered with --account-api get them; scopes, audience, revocation and the
// RFC 9470 step-up challenge for deletion are enforced; "Remove access" kills the RP's refresh
// token and its JWT access token at once.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import { Browser, isPage } from '../helpers/browser.ts';
import { REDIRECT, createVerifiedUser, insecure, pageKind, startAuthorization, type Credentials } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const MAX_AGE = 3; // DELETION_MAX_AGE for this server
let server: TestServer;
let api: string;
let rp: oidc.Configuration;
let plain: oidc.Configuration;
const createUser = (prefix: string) => createVerifiedUser(server, prefix);

/**
 * Signs in through the hosted pages (password, consent) and exchanges the code, passing
 * `tokenParams` (e.g. the resource) to the token endpoint as the RP would.
 */
async function signIn(config: oidc.Configuration, browser: Browser, creds: Credentials, params: Record<string, string>, tokenParams: Record<string, string> = {}) {
  const { step: first, verifier, state } = await startAuthorization(browser, config, params);
  let step = first;
  let consent: string | undefined;
  for (let i = 0; i < 6 && isPage(step); i++) {
    const kind = pageKind(step);
    if (kind === 'login') step = await browser.submit(step, 'form[action$="/login"]', { email: creds.email, password: creds.password });
    else if (kind === 'consent') {
      consent = step.doc.querySelector('main')?.text;
      step = await browser.submit(step, 'form[action$="/consent"]');
    }
    else throw new Error(`unexpected page ${step.url}: ${step.doc.querySelector('main')?.text.trim().slice(0, 300)}`);
  }
  const callback = new URL((step as { redirect: string }).redirect);
  if (callback.searchParams.get('error')) return { callback, consent };
  const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state }, tokenParams);
  return { callback, tokens, consent };
}

function call(path: string, token: string | undefined, method = 'GET', headers: Record<string, string> = {}) {
  return fetch(`${server.issuer}${path}`, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
}

const API_SCOPES = 'openid email offline_access account:read account:write';

before(async () => {
  server = await startServer({ DELETION_MAX_AGE: String(MAX_AGE) });
  api = `${server.issuer}/api/account`;
  const created = (await server.cli(['clients', 'create', '--id', 'api-rp', '--name', 'Api App', '--redirect-uri', REDIRECT, '--account-api'])) as { client_secret: string; account_api: boolean };
  assert.equal(created.account_api, true);
  rp = await oidc.discovery(new URL(server.issuer), 'api-rp', created.client_secret, undefined, insecure);
  const other = (await server.cli(['clients', 'create', '--id', 'plain-rp', '--name', 'Plain App', '--redirect-uri', REDIRECT])) as { client_secret: string };
  plain = await oidc.discovery(new URL(server.issuer), 'plain-rp', other.client_secret, undefined, insecure);
});
after(async () => server?.stop());

describe('Account API', () => {
  test('discovery advertises the console as account_management_uri', () => {
    assert.equal(rp.serverMetadata().account_management_uri, `${server.issuer}/account`);
  });

  test('a client not registered with --account-api cannot request the resource; `clients update --account-api` allows it', async () => {
    const user = await createUser('plain');
    const refused = await startAuthorization(new Browser(), plain, { resource: api, scope: 'openid account:read' });
    assert.ok(!isPage(refused.step), 'the RP gets an error redirect');
    assert.equal(new URL(refused.step.redirect).searchParams.get('error'), 'invalid_target');

    await server.cli(['clients', 'update', 'plain-rp', '--account-api']);
    const allowed = await signIn(plain, new Browser(), user, { resource: api, scope: 'openid account:read' }, { resource: api });
    assert.ok(allowed.tokens, `tokens issued: ${allowed.callback}`);
    assert.equal((await call('/api/account', allowed.tokens.access_token)).status, 200);

    await server.cli(['clients', 'update', 'plain-rp', '--no-account-api']);
    const again = await startAuthorization(new Browser(), plain, { resource: api, scope: 'openid account:read' });
    assert.ok(!isPage(again.step));
    assert.equal(new URL(again.step.redirect).searchParams.get('error'), 'invalid_target');
  });

  describe('with an RP token for the API', () => {
    let user: Credentials;
    let tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers;
    let readOnly: string;

    before(async () => {
      user = await createUser('reader');
      const signed = await signIn(rp, new Browser(), user, { resource: api, scope: API_SCOPES, prompt: 'consent' }, { resource: api });
      tokens = signed.tokens!;
      // The consent page told the user what the API scopes allow.
      assert.match(signed.consent ?? '', /delete your account/);
      // A second, read-only token from the same grant (down-scoped at the refresh).
      const refreshed = await oidc.refreshTokenGrant(rp, tokens.refresh_token!, { resource: api, scope: 'account:read' });
      readOnly = refreshed.access_token;
      tokens = Object.assign(tokens, { refresh_token: refreshed.refresh_token });
    });

    test('the access token is a JWT for <ISSUER>/api/account, signed with a key from /jwks', async () => {
      const jwks = jose.createRemoteJWKSet(new URL(rp.serverMetadata().jwks_uri!));
      const { payload, protectedHeader } = await jose.jwtVerify(tokens.access_token, jwks, { issuer: server.issuer, audience: api, typ: 'at+jwt' });
      assert.deepEqual(new Set(String(payload.scope).split(' ')), new Set(['account:read', 'account:write']));
      assert.equal(payload.client_id, 'api-rp');
      assert.equal(typeof payload.auth_time, 'number');
      assert.ok(protectedHeader.kid);
      assert.equal(jose.decodeJwt(readOnly).scope, 'account:read');
    });

    test('GET /api/account, /grants and /sessions answer with the user’s data', async () => {
      const me = await call('/api/account', tokens.access_token);
      assert.equal(me.status, 200);
      assert.equal(me.headers.get('cache-control'), 'no-store');
      const body = (await me.json()) as { email: string; sub: string };
      assert.equal(body.email, user.email);
      assert.equal(body.sub, tokens.claims()!.sub);

      const grants = (await (await call('/api/account/grants', readOnly)).json()) as { grants: { client_id: string; client_name: string; scopes: string[] }[] };
      const mine = grants.grants.find((g) => g.client_id === 'api-rp');
      assert.ok(mine, JSON.stringify(grants));
      assert.equal(mine.client_name, 'Api App');
      assert.ok(mine.scopes.includes('account:write') && mine.scopes.includes('openid'), mine.scopes.join(' '));

      const sessions = (await (await call('/api/account/sessions', readOnly)).json()) as { sessions: { id: string; clients: string[] }[] };
      assert.equal(sessions.sessions.length, 1);
      assert.ok(sessions.sessions[0]!.clients.includes('api-rp'));
      assert.equal((await call('/api/account/deletion', readOnly)).status, 200);
    });

    test('no token: 401 with a bare Bearer challenge; a token without the scope: 403 insufficient_scope', async () => {
      const none = await call('/api/account', undefined);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), 'Bearer');

      for (const [method, path] of [['DELETE', '/api/account/grants/api-rp'], ['DELETE', '/api/account/sessions/x'], ['POST', '/api/account/deletion'], ['DELETE', '/api/account/deletion']]) {
        const res = await call(path!, readOnly, method);
        assert.equal(res.status, 403, `${method} ${path}`);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer error="insufficient_scope".*scope="account:write"/);
        assert.equal(((await res.json()) as { error: string }).error, 'insufficient_scope');
      }
      // Nothing was changed by the refused calls.
      assert.equal((await call('/api/account/grants', readOnly)).status, 200);
    });

    test('tokens for another audience, with another signature or tampered are refused as invalid_token', async () => {
      // The ID token: the IdP's signature, but not an access token for this API.
      const idToken = tokens.id_token!;
      // The opaque access token for userinfo (no resource at the token endpoint).
      const userinfoOnly = (await oidc.refreshTokenGrant(rp, tokens.refresh_token!)).refresh_token;
      // Same claims, signed by somebody else's key.
      const { privateKey } = await jose.generateKeyPair('RS256');
      const forged = await new jose.SignJWT(jose.decodeJwt(tokens.access_token))
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jose.decodeProtectedHeader(tokens.access_token).kid! })
        .sign(privateKey);
      // The real token with its payload changed to another user.
      const [h, p, s] = tokens.access_token.split('.');
      const claims = JSON.parse(Buffer.from(p!, 'base64url').toString());
      const tampered = [h, Buffer.from(JSON.stringify({ ...claims, sub: crypto.randomUUID() })).toString('base64url'), s].join('.');
      for (const [name, token] of Object.entries({ idToken, forged, tampered, garbage: 'abc.def.ghi' })) {
        const res = await call('/api/account', token);
        assert.equal(res.status, 401, name);
        assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/, name);
      }
      tokens = Object.assign(tokens, { refresh_token: userinfoOnly });
      const opaque = (await oidc.refreshTokenGrant(rp, tokens.refresh_token!));
      tokens = Object.assign(tokens, { refresh_token: opaque.refresh_token });
      assert.ok(!opaque.access_token.includes('.'), 'without resource the access token is opaque (userinfo)');
      assert.equal((await call('/api/account', opaque.access_token)).status, 401);
    });

    test('DELETE /api/account/grants/{client_id}: the RP’s refresh token and its JWT access token die at once', async () => {
      const fresh = await oidc.refreshTokenGrant(rp, tokens.refresh_token!, { resource: api });
      assert.equal((await call('/api/account', fresh.access_token)).status, 200);
      const removed = await call('/api/account/grants/api-rp', fresh.access_token, 'DELETE');
      assert.equal(removed.status, 204);
      // The JWT has not expired, but its grant is gone.
      const after = await call('/api/account', fresh.access_token);
      assert.equal(after.status, 401);
      assert.match(after.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      assert.equal((await call('/api/account', readOnly)).status, 401, 'every token of that grant');
      await assert.rejects(oidc.refreshTokenGrant(rp, fresh.refresh_token!, { resource: api }), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    });
  });

  test('POST /api/account/deletion with a stale auth_time: 401 insufficient_user_authentication (RFC 9470); after step-up it is scheduled', async () => {
    const user = await createUser('leaver');
    const browser = new Browser();
    const first = await signIn(rp, browser, user, { resource: api, scope: API_SCOPES, prompt: 'consent' }, { resource: api });
    await new Promise((r) => setTimeout(r, (MAX_AGE + 1.5) * 1000));
    const stale = await call('/api/account/deletion', first.tokens!.access_token, 'POST');
    assert.equal(stale.status, 401);
    const challenge = stale.headers.get('www-authenticate') ?? '';
    assert.match(challenge, /^Bearer error="insufficient_user_authentication"/);
    assert.match(challenge, new RegExp(`max_age=${MAX_AGE}(,|$)`));
    assert.equal(((await stale.json()) as { error: string }).error, 'insufficient_user_authentication');
    assert.equal(((await (await call('/api/account/deletion', first.tokens!.access_token)).json()) as { status: string }).status, 'none', 'nothing scheduled');

    // The RP sends the user through authentication again (max_age from the challenge) and retries.
    const again = await signIn(rp, browser, user, { resource: api, scope: API_SCOPES, prompt: 'consent', max_age: String(MAX_AGE) }, { resource: api });
    const claims = jose.decodeJwt(again.tokens!.access_token);
    assert.ok(Math.floor(Date.now() / 1000) - (claims.auth_time as number) <= MAX_AGE);
    const scheduled = await call('/api/account/deletion', again.tokens!.access_token, 'POST');
    assert.equal(scheduled.status, 202);
    const body = (await scheduled.json()) as { status: string; deletion_date: string };
    assert.equal(body.status, 'scheduled');
    assert.ok(new Date(body.deletion_date).getTime() > Date.now() + 29 * 86_400_000);
    // Scheduling revoked every grant: this token is dead too.
    assert.equal((await call('/api/account', again.tokens!.access_token)).status, 401);
  });

  test('unknown routes under /api/account answer JSON 404', async () => {
    const res = await call('/api/account/nope', undefined);
    assert.equal(res.status, 404);
    assert.equal(((await res.json()) as { error: string }).error, 'not_found');
  });
});
