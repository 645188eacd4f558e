// Refresh tokens attacked: reuse revokes one sign-in's token family and nothing else, a
// duplicate refresh within REFRESH_REUSE_GRACE is served (RFC 9700 §4.14.2), reuse after it is
// audited and mailed, PKCE is required of every client, and the resource-server helper accepts
// access tokens only. Real server, real SMTP sink, openid-client as the RP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import pg from 'pg';
import { loadConfig } from '../../src/config.ts';
import { createProvider, type ProviderDeps } from '../../src/oidc/provider.ts';
import { Browser, asRedirect } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';
import { REDIRECT, authorize, insecure, type Credentials } from '../helpers/rp.ts';

const POSTGRES = Boolean(process.env.DATABASE_URL);
const NEEDS_POSTGRES = 'needs DATABASE_URL: embedded PGlite has one connection, so requests are never in flight at once';
/** Short, so the replay-after-grace test waits little; long enough for a retry right after a refresh. */
const GRACE = 2;
const OFFLINE = { scope: 'openid email offline_access', prompt: 'consent' };

type Tokens = Awaited<ReturnType<typeof oidc.refreshTokenGrant>>;

let sink: SmtpSink;
let server: TestServer;
/** A third-party confidential client: consent is asked once, then remembered. */
let thirdParty: oidc.Configuration;
let firstParty: oidc.Configuration;
let userCounter = 0;

async function createUser(prefix: string): Promise<Credentials & { id: string }> {
  const email = `${prefix}${++userCounter}@example.com`;
  // Unique, and built from nothing the password policy refuses (the address, the name, the product).
  const password = `violet teapot orbit ${userCounter}`;
  const { id } = (await server.cli(['users', 'create', '--email', email, '--password', password, '--verified'])) as { id: string };
  return { id, email, password };
}

async function createClient(id: string, extra: string[] = []) {
  const created = (await server.cli([
    'clients', 'create', '--id', id, '--name', `App ${id}`, '--redirect-uri', REDIRECT,
    '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', ...extra,
  ])) as { client_secret: string };
  return { config: await oidc.discovery(new URL(server.issuer), id, created.client_secret, undefined, insecure), secret: created.client_secret };
}

/** One sign-in on one device with a refresh token; returns the pages seen and the tokens. */
async function signIn(config: oidc.Configuration, browser: Browser, user: Credentials, params: Record<string, string> = OFFLINE) {
  const outcome = await authorize(config, browser, user, params);
  assert.ok(outcome.tokens, `tokens after ${outcome.pages.join(' → ')} (${outcome.callback?.search ?? 'no callback'})`);
  return { pages: outcome.pages, tokens: outcome.tokens };
}

const isInvalidGrant = (err: oidc.ResponseBodyError) => err.error === 'invalid_grant';

async function active(config: oidc.Configuration, token: string): Promise<boolean> {
  return (await oidc.tokenIntrospection(config, token)).active;
}

before(async () => {
  sink = new SmtpSink();
  await sink.start();
  server = await startServer({ SMTP_URL: `smtp://127.0.0.1:${sink.port}`, MAIL_POLL_INTERVAL: '1', REFRESH_REUSE_GRACE: String(GRACE) });
  [{ config: thirdParty }, { config: firstParty }] = await Promise.all([createClient('third'), createClient('first', ['--first-party'])]);
});

after(async () => {
  await server?.stop();
  await sink?.stop();
});

describe('a token family is one sign-in on one device', () => {
  test('reuse on device A revokes A only: device B, sharing the remembered consent, keeps refreshing', async () => {
    const user = await createUser('devices');
    const a = await signIn(thirdParty, new Browser(), user);
    assert.deepEqual(a.pages, ['login', 'consent'], 'consent asked on the first device');

    // Device B signs in; without offline access it needs no consent page: the consent is remembered.
    const browserB = new Browser();
    const bPlain = await signIn(thirdParty, browserB, user, { scope: 'openid email' });
    assert.deepEqual(bPlain.pages, ['login'], 'remembered consent: nothing asked on the second device');
    // A refresh token needs prompt=consent (OIDC Core §11), so B confirms once more.
    const b = await signIn(thirdParty, browserB, user);
    assert.deepEqual(b.pages, ['consent']);

    const a2 = await oidc.refreshTokenGrant(thirdParty, a.tokens.refresh_token!);
    await sleep((GRACE + 1) * 1000);
    // Someone replays A's first refresh token: A's family dies…
    await assert.rejects(oidc.refreshTokenGrant(thirdParty, a.tokens.refresh_token!), isInvalidGrant);
    await assert.rejects(oidc.refreshTokenGrant(thirdParty, a2.refresh_token!), isInvalidGrant, 'A\'s newest refresh token is revoked');
    assert.equal(await active(thirdParty, a2.access_token), false, 'A\'s access token is revoked');

    // …and B's does not.
    assert.equal(await active(thirdParty, bPlain.tokens.access_token), true, 'B\'s earlier access token still works');
    assert.equal(await active(thirdParty, b.tokens.access_token), true, 'B\'s access token still works');
    const b2 = await oidc.refreshTokenGrant(thirdParty, b.tokens.refresh_token!);
    const b3 = await oidc.refreshTokenGrant(thirdParty, b2.refresh_token!);
    assert.equal(await active(thirdParty, b3.access_token), true);

    // The consent is still remembered for a new device.
    const c = await signIn(thirdParty, new Browser(), user, { scope: 'openid email' });
    assert.deepEqual(c.pages, ['login'], 'a third device is not asked again');
  });
});

describe('REFRESH_REUSE_GRACE', () => {
  test('two refreshes of one token in flight at once both get tokens, and the resulting refresh tokens work', { skip: POSTGRES ? false : NEEDS_POSTGRES }, async () => {
    const user = await createUser('concurrent');
    let refreshToken = (await signIn(firstParty, new Browser(), user)).tokens.refresh_token!;
    for (let round = 0; round < 5; round++) {
      const results = await Promise.allSettled([
        oidc.refreshTokenGrant(firstParty, refreshToken),
        oidc.refreshTokenGrant(firstParty, refreshToken),
      ]);
      const errors = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as oidc.ResponseBodyError).error ?? r.reason)] : []));
      assert.deepEqual(errors, [], `round ${round}: both concurrent refreshes succeed`);
      const [first, second] = results.map((r) => (r as PromiseFulfilledResult<Tokens>).value);
      assert.ok(first!.refresh_token && second!.refresh_token);
      assert.equal(await active(firstParty, first!.access_token), true, `round ${round}: the first response's access token works`);
      assert.equal(await active(firstParty, second!.access_token), true, `round ${round}: the second response's access token works`);
      // Both new refresh tokens work (neither response was a dead end); continue from one of them.
      const fromFirst = await oidc.refreshTokenGrant(firstParty, first!.refresh_token!);
      const fromSecond = await oidc.refreshTokenGrant(firstParty, second!.refresh_token!);
      assert.equal(await active(firstParty, fromFirst.access_token), true);
      refreshToken = fromSecond.refresh_token!;
    }
  });

  test('a retry right after a refresh (lost response) gets tokens; the first response\'s tokens stay valid', async () => {
    const user = await createUser('retry');
    const { tokens } = await signIn(firstParty, new Browser(), user);
    const lost = await oidc.refreshTokenGrant(firstParty, tokens.refresh_token!);
    const retried = await oidc.refreshTokenGrant(firstParty, tokens.refresh_token!);
    assert.ok(retried.access_token && retried.refresh_token);
    assert.equal(await active(firstParty, lost.access_token), true);
    assert.ok((await oidc.refreshTokenGrant(firstParty, retried.refresh_token!)).access_token);
    assert.ok((await oidc.refreshTokenGrant(firstParty, lost.refresh_token!)).access_token);
  });

  test('a replay after the grace: invalid_grant, the family dies, the reuse is audited and mailed; other sign-ins live', async () => {
    const user = await createUser('replay');
    const { tokens } = await signIn(firstParty, new Browser(), user);
    const other = await signIn(firstParty, new Browser(), user);
    const otherThird = await signIn(thirdParty, new Browser(), user);
    const next = await oidc.refreshTokenGrant(firstParty, tokens.refresh_token!);
    await sleep((GRACE + 1) * 1000);

    await assert.rejects(oidc.refreshTokenGrant(firstParty, tokens.refresh_token!), isInvalidGrant);
    await assert.rejects(oidc.refreshTokenGrant(firstParty, next.refresh_token!), isInvalidGrant, 'the newest refresh token of the family is dead');
    assert.equal(await active(firstParty, next.access_token), false, 'the family\'s access token is dead');
    assert.equal(await active(firstParty, tokens.access_token), false);

    // Another sign-in of the same user and client, and one with another client, are untouched.
    assert.equal(await active(firstParty, other.tokens.access_token), true);
    assert.ok((await oidc.refreshTokenGrant(firstParty, other.tokens.refresh_token!)).access_token);
    assert.ok((await oidc.refreshTokenGrant(thirdParty, otherThird.tokens.refresh_token!)).access_token);

    const mail = await sink.next(user.email, /token was reused/);
    assert.match(mail.text, /App first/, 'the mail names the application');
    assert.ok(mail.links.includes(`${server.issuer}/forgot-password`), 'the mail links to the password reset');
    assert.equal(sink.to(user.email).length, 1, 'one mail for one reuse');

    if (!POSTGRES) return; // the audit table is read directly, which PGlite's single connection does not allow
    const db = new pg.Client({ connectionString: server.env.DATABASE_URL });
    await db.connect();
    try {
      const { rows } = await db.query<{ user_id: string; client_id: string; data: Record<string, unknown> }>(
        "SELECT user_id, client_id, data FROM audit_events WHERE type = 'token.reuse_detected' AND user_id = $1",
        [user.id],
      );
      assert.equal(rows.length, 1, 'one token.reuse_detected row');
      assert.equal(rows[0]!.client_id, 'first');
      assert.equal(rows[0]!.data.grantType, 'refresh_token');
    } finally {
      await db.end();
    }
  });
});

describe('PKCE for every client', () => {
  test('an authorization code request without PKCE from a confidential client is refused', async () => {
    const url = oidc.buildAuthorizationUrl(firstParty, { redirect_uri: REDIRECT, scope: 'openid', state: 'no-pkce' });
    const callback = new URL(asRedirect(await new Browser().get(url.href)));
    assert.equal(callback.searchParams.get('error'), 'invalid_request');
    assert.match(callback.searchParams.get('error_description') ?? '', /PKCE/);
    assert.equal(callback.searchParams.get('state'), 'no-pkce');
  });

  test('plain PKCE is refused too', async () => {
    const url = oidc.buildAuthorizationUrl(firstParty, { redirect_uri: REDIRECT, scope: 'openid', code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' });
    const callback = new URL(asRedirect(await new Browser().get(url.href)));
    assert.equal(callback.searchParams.get('error'), 'invalid_request');
  });
});

describe('resource-server helper: access tokens only, audience', () => {
  test('a refresh token as bearer is invalid_token; an access token passes; a configured audience is enforced', async () => {
    const { createStepUpGuard } = await import('latchkey/resource-server');
    const api = (await server.cli(['clients', 'create', '--id', 'api', '--resource-server', '--grant-type', 'client_credentials'])) as { client_secret: string };
    const guard = createStepUpGuard({ issuer: server.issuer, clientId: 'api', clientSecret: api.client_secret });
    const strict = createStepUpGuard({ issuer: server.issuer, clientId: 'api', clientSecret: api.client_secret, audience: 'https://orders.example' });
    const resource = http.createServer((req, res) => {
      const selected = req.url === '/strict' ? strict : guard;
      void selected.middleware()(req, res, (err?: unknown) => {
        res.statusCode = err ? 500 : 200;
        res.end(err ? 'error' : 'secret data');
      });
    });
    await new Promise<void>((r) => resource.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(resource.address() as AddressInfo).port}`;
    const call = (path: string, token: string) => fetch(`${base}${path}`, { headers: { authorization: `Bearer ${token}` } });
    try {
      const user = await createUser('rs');
      const { tokens } = await signIn(firstParty, new Browser(), user);

      const withRefresh = await call('/', tokens.refresh_token!);
      assert.equal(withRefresh.status, 401, 'a refresh token is not a bearer credential');
      assert.equal(((await withRefresh.json()) as { error: string }).error, 'invalid_token');
      assert.match(withRefresh.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/);

      const withAccess = await call('/', tokens.access_token);
      assert.equal(withAccess.status, 200);
      assert.equal(await withAccess.text(), 'secret data');

      // This access token was issued for no resource: a guard that needs one refuses it.
      const wrongAudience = await call('/strict', tokens.access_token);
      assert.equal(wrongAudience.status, 401);
      assert.equal(((await wrongAudience.json()) as { error: string }).error, 'invalid_token');
    } finally {
      resource.close();
    }
  });

  test('checkAccessToken: token type and audience (string or array)', async () => {
    const { checkAccessToken } = await import('latchkey/resource-server');
    const at = { active: true, token_type: 'Bearer', aud: ['https://orders.example', 'https://other.example'] };
    assert.equal(checkAccessToken(at).ok, true);
    assert.equal(checkAccessToken({ ...at, token_type: 'DPoP' }).ok, true);
    assert.equal(checkAccessToken({ active: true }).ok, false, 'no token_type: a refresh token');
    assert.equal(checkAccessToken({ ...at, active: false }).ok, false);
    assert.equal(checkAccessToken(at, { audience: 'https://orders.example' }).ok, true);
    assert.equal(checkAccessToken({ ...at, aud: 'https://orders.example' }, { audience: 'https://orders.example' }).ok, true);
    assert.equal(checkAccessToken(at, { audience: ['https://nope.example', 'https://other.example'] }).ok, true);
    assert.equal(checkAccessToken(at, { audience: 'https://nope.example' }).ok, false);
    assert.equal(checkAccessToken({ ...at, aud: undefined }, { audience: 'https://orders.example' }).ok, false);
  });
});

describe('cookie names over https (provider configuration)', () => {
  async function providerFor(issuer: string) {
    const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await jose.exportJWK(privateKey)), alg: 'RS256', use: 'sig', kid: 'test' };
    const config = loadConfig({ ISSUER: issuer, NODE_ENV: 'test', LATCHKEY_SECRET: 'test-secret-0123456789abcdefghijklmnopqrstuvwxyz', TRUST_PROXY: 'true', TRUST_PROXY_HOPS: '2' });
    // Nothing here touches storage or pages: only the configuration is inspected.
    const unused = {} as never;
    const deps: ProviderDeps = { config, db: unused, views: unused, clients: unused, factors: unused, assurance: unused, jwks: { keys: [jwk] }, cookieKeys: ['k'], atRestKey: Buffer.alloc(32) };
    return createProvider(deps);
  }

  test('https: the session cookie is __Host-, the path-scoped ones __Secure-; the proxy hop count is applied', async () => {
    const provider = await providerFor('https://id.example.com');
    assert.equal(provider.cookieName('session'), '__Host-lk.session');
    assert.equal(provider.cookieName('interaction'), '__Secure-lk.interaction');
    assert.equal(provider.cookieName('resume'), '__Secure-lk.resume');
    assert.equal(provider.maxIpsCount, 2);
  });

  test('http (development): no prefix, which browsers would refuse on an insecure origin', async () => {
    const provider = await providerFor('http://localhost:3000');
    assert.equal(provider.cookieName('session'), 'lk.session');
  });
});
