// End to end: the real server process, the real CLI, openid-client v6 as the relying party,
// and a cookie-keeping browser submitting the hosted pages' forms.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import * as jose from 'jose';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { devMailLinks, startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, insecure, startAuthorization } from '../helpers/rp.ts';

const POST_LOGOUT = 'http://localhost:9/bye';
const ALICE = { email: 'alice@example.com', password: 'correct horse battery', name: 'Alice Example' };

let server: TestServer;
let rp: oidc.Configuration;
let rpSecret: string;

async function signInAndGetCode(browser: Browser, config: oidc.Configuration, params: Record<string, string> = {}, credentials: { email: string; password: string } = ALICE) {
  let { step, verifier, state } = await startAuthorization(browser, config, { scope: 'openid email profile offline_access', prompt: 'consent', ...params });
  if (isPage(step) && step.doc.querySelector('input[name=password]')) {
    step = await browser.submit(step, 'form[action$="/login"]', { email: credentials.email, password: credentials.password });
  }
  return { step, verifier, state };
}

async function loginAndExchange(browser: Browser, config = rp, params: Record<string, string> = {}) {
  const { step, verifier, state } = await signInAndGetCode(browser, config, params);
  const callback = new URL(asRedirect(step));
  return oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
}

before(async () => {
  // No reuse grace: the replays below come right after the rotation (the grace is tested in refresh-tokens.test.ts).
  server = await startServer({ REFRESH_REUSE_GRACE: '0' });
  await server.cli(['users', 'create', '--email', ALICE.email, '--password', ALICE.password, '--name', ALICE.name, '--verified']);
  const created = (await server.cli([
    'clients', 'create', '--id', 'rp', '--name', 'Demo RP', '--first-party',
    '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', POST_LOGOUT,
    '--grant-type', 'authorization_code', '--grant-type', 'refresh_token', '--grant-type', 'client_credentials',
  ])) as { client_id: string; client_secret: string };
  rpSecret = created.client_secret;
  assert.equal(created.client_id, 'rp');
  assert.ok(rpSecret.length >= 32);
  rp = await oidc.discovery(new URL(server.issuer), 'rp', rpSecret, undefined, insecure);
});

after(async () => {
  await server?.stop();
});

describe('discovery', () => {
  test('advertises what is enabled and nothing disabled', async () => {
    const meta = rp.serverMetadata();
    assert.equal(meta.issuer, server.issuer);
    assert.deepEqual(meta.response_types_supported, ['code', 'none']);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.deepEqual(meta.acr_values_supported, ['urn:latchkey:acr:pwd', 'urn:latchkey:acr:mfa', 'urn:latchkey:acr:phr']);
    for (const key of ['introspection_endpoint', 'revocation_endpoint', 'end_session_endpoint', 'pushed_authorization_request_endpoint', 'userinfo_endpoint']) {
      assert.ok(meta[key], `${key} advertised`);
    }
    assert.equal(meta.backchannel_logout_supported, true);
    assert.ok(!('registration_endpoint' in meta), 'dynamic registration is off');
    assert.deepEqual(meta.token_endpoint_auth_methods_supported, ['client_secret_basic', 'client_secret_post', 'none']);
  });
});

describe('authorization code + PKCE through the hosted pages', () => {
  let tokens: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
  const browser = new Browser();

  test('signs in with a password and receives verified tokens', async () => {
    const before = Math.floor(Date.now() / 1000);
    tokens = await loginAndExchange(browser);
    assert.ok(tokens.access_token);
    assert.ok(tokens.refresh_token, 'offline_access yields a refresh token');
    // Verify the ID token signature ourselves against the published JWKS.
    const jwks = jose.createRemoteJWKSet(new URL(rp.serverMetadata().jwks_uri!));
    const { payload, protectedHeader } = await jose.jwtVerify(tokens.id_token!, jwks, { issuer: server.issuer, audience: 'rp' });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.match(String(payload.sub), /^[0-9a-f-]{36}$/, 'sub is an opaque uuid');
    assert.notEqual(payload.sub, ALICE.email);
    assert.equal(payload.email, ALICE.email);
    assert.equal(payload.email_verified, true);
    assert.equal(payload.name, ALICE.name);
    assert.equal(payload.acr, 'urn:latchkey:acr:pwd');
    assert.deepEqual(payload.amr, ['pwd']);
    assert.ok(Number(payload.auth_time) >= before - 1 && Number(payload.auth_time) <= Math.floor(Date.now() / 1000) + 1);
  });

  test('userinfo returns the claims for the access token', async () => {
    const claims = tokens.claims()!;
    const info = await oidc.fetchUserInfo(rp, tokens.access_token, claims.sub);
    assert.equal(info.sub, claims.sub);
    assert.equal(info.email, ALICE.email);
    assert.equal(info.name, ALICE.name);
  });

  test('introspection describes an active token', async () => {
    const result = await oidc.tokenIntrospection(rp, tokens.access_token);
    assert.equal(result.active, true);
    assert.equal(result.client_id, 'rp');
    assert.equal(result.sub, tokens.claims()!.sub);
  });

  test('refresh tokens rotate; replaying the old one revokes the grant', async () => {
    const first = tokens.refresh_token!;
    const second = await oidc.refreshTokenGrant(rp, first);
    assert.ok(second.refresh_token);
    assert.notEqual(second.refresh_token, first, 'rotated on use');
    const third = await oidc.refreshTokenGrant(rp, second.refresh_token!);
    assert.ok(third.access_token);
    // Replay the consumed one: refused, and the grant dies with it.
    await assert.rejects(oidc.refreshTokenGrant(rp, first), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    await assert.rejects(oidc.refreshTokenGrant(rp, third.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    const introspected = await oidc.tokenIntrospection(rp, third.access_token);
    assert.equal(introspected.active, false, 'access tokens of the revoked grant are dead too');
  });

  test('revocation makes an access token inactive', async () => {
    const fresh = await loginAndExchange(browser);
    assert.equal((await oidc.tokenIntrospection(rp, fresh.access_token)).active, true);
    await oidc.tokenRevocation(rp, fresh.access_token);
    assert.equal((await oidc.tokenIntrospection(rp, fresh.access_token)).active, false);
  });

  test('the session is reused: a second authorization needs no password', async () => {
    const { step } = await signInAndGetCode(browser, rp);
    assert.match(asRedirect(step), /^http:\/\/localhost:9\/cb\?code=/);
  });

  test('max_age=0 shows the sign-in page again', async () => {
    const { step } = await signInAndGetCode(browser, rp, { max_age: '0' }, { email: '', password: '' });
    // signInAndGetCode submitted empty credentials: the page must be the sign-in page again.
    const page = asPage(step);
    assert.ok(page.doc.querySelector('input[name=password]'), 'sign-in form shown');
  });

  test('RP-initiated logout with a hosted confirmation page', async () => {
    const fresh = await loginAndExchange(browser);
    const url = oidc.buildEndSessionUrl(rp, { id_token_hint: fresh.id_token!, post_logout_redirect_uri: POST_LOGOUT, state: 'bye' });
    const page = asPage(await browser.get(url.href));
    assert.equal(page.status, 200);
    assert.ok(page.doc.querySelector('button[name=logout]')?.text.includes('Yes, sign me out'));
    const done = asRedirect(await browser.submit(page, 'form', {}, { name: 'logout', value: 'yes' }));
    assert.equal(done, `${POST_LOGOUT}?state=bye`);
    // The session is gone: prompt=none now fails with login_required.
    const { step } = await signInAndGetCode(browser, rp, { prompt: 'none' });
    const cb = new URL(asRedirect(step));
    assert.equal(cb.searchParams.get('error'), 'login_required');
  });
});

describe('client credentials', () => {
  test('a confidential client gets an access token for itself', async () => {
    const tokens = await oidc.clientCredentialsGrant(rp, {});
    assert.ok(tokens.access_token);
    const result = await oidc.tokenIntrospection(rp, tokens.access_token);
    assert.equal(result.active, true);
    assert.equal(result.client_id, 'rp');
    assert.equal(result.sub, undefined);
  });
});

describe('prompt=none', () => {
  test('without a session answers login_required at the redirect URI', async () => {
    const { step } = await signInAndGetCode(new Browser(), rp, { prompt: 'none' });
    const cb = new URL(asRedirect(step));
    assert.equal(cb.searchParams.get('error'), 'login_required');
    assert.ok(cb.searchParams.get('state'));
  });
});

describe('sign-up on the hosted page', () => {
  test('creates the account and finishes the sign-in', async () => {
    const browser = new Browser();
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid email profile',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const login = asPage(await browser.get(url.href));
    const signupHref = login.doc.querySelectorAll('a').find((a) => a.text.includes('Create an account'))!.getAttribute('href')!;
    const signup = asPage(await browser.get(new URL(signupHref, server.issuer).href));
    // Too short a password: the page explains and nothing is created.
    const weak = asPage(await browser.submit(signup, 'form[action$="/signup"]', { name: 'Bob', email: 'bob@example.com', password: 'short' }));
    assert.equal(weak.status, 400);
    assert.match(weak.html, /at least 8 characters/);
    // A common password, and one made of the account's own name, are refused with the reason.
    const common = asPage(await browser.submit(weak, 'form[action$="/signup"]', { name: 'Bob', email: 'bob@example.com', password: 'Password123!' }));
    assert.equal(common.status, 400);
    assert.match(common.html, /in a list of commonly used passwords/);
    const own = asPage(await browser.submit(common, 'form[action$="/signup"]', { name: 'Bobby Tables', email: 'bob@example.com', password: 'tables are fun 42' }));
    assert.equal(own.status, 400);
    assert.match(own.html, /contains your name/);
    const sent = asPage(await browser.submit(own, 'form[action$="/signup"]', { name: 'Bob', email: 'bob@example.com', password: 'a long enough password' }));
    assert.equal(sent.status, 200);
    assert.equal(sent.doc.querySelector('h1')?.text.trim(), 'Check your email');
    let users = (await server.cli(['users', 'list'])) as { email: string }[];
    assert.ok(!users.some((u) => u.email === 'bob@example.com'), 'the account exists only once the mailbox is proven');
    // The development transport prints the mail to the log; the link finishes the sign-up here.
    const link = (await devMailLinks(server, 'bob@example.com')).find((l) => l.includes('/magic-link/verify'))!;
    const confirm = asPage(await browser.get(link));
    const done = await browser.submit(confirm, 'form[action$="/magic-link/verify"]');
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(asRedirect(done)), { pkceCodeVerifier: verifier });
    const claims = tokens.claims()!;
    assert.equal(claims.email, 'bob@example.com');
    assert.equal(claims.name, 'Bob');
    assert.equal(claims.email_verified, true);
    users = (await server.cli(['users', 'list'])) as { email: string }[];
    assert.ok(users.some((u) => u.email === 'bob@example.com'));
  });

  test('an address that is taken gets the same answer as a free one, case-insensitively', async () => {
    const browser = new Browser();
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    const login = asPage(await browser.get(url.href));
    const signup = asPage(await browser.get(login.url + '/signup'));
    const page = asPage(await browser.submit(signup, 'form[action$="/signup"]', { name: 'Eve', email: 'ALICE@example.com', password: 'a long enough password' }));
    assert.equal(page.status, 200);
    assert.equal(page.doc.querySelector('h1')?.text.trim(), 'Check your email');
    assert.doesNotMatch(page.html, /already exists/);
    // The owner is told instead, and Eve's password does not open Alice's account.
    const links = await devMailLinks(server, 'alice@example.com');
    assert.ok(links.some((l) => l.endsWith('/forgot-password')), 'the owner gets a mail pointing at sign-in and reset');
  });
});

describe('third-party consent', () => {
  let third: oidc.Configuration;
  before(async () => {
    const created = (await server.cli(['clients', 'create', '--id', 'third', '--name', 'Third Party App', '--redirect-uri', REDIRECT])) as { client_secret: string };
    third = await oidc.discovery(new URL(server.issuer), 'third', created.client_secret, undefined, insecure);
  });

  test('lists what is asked, and the grant is remembered for later sessions', async () => {
    const browser = new Browser();
    const verifier = oidc.randomPKCECodeVerifier();
    const url = oidc.buildAuthorizationUrl(third, {
      redirect_uri: REDIRECT,
      scope: 'openid email',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    const login = asPage(await browser.get(url.href));
    const consent = asPage(await browser.submit(login, 'form[action$="/login"]', { email: ALICE.email, password: ALICE.password }));
    assert.match(consent.html, /Third Party App/);
    assert.match(consent.html, /Your email address/);
    const done = await browser.submit(consent, 'form[action$="/consent"]');
    const tokens = await oidc.authorizationCodeGrant(third, new URL(asRedirect(done)), { pkceCodeVerifier: verifier });
    assert.equal(tokens.claims()!.email, ALICE.email);

    // A new browser (new session): password again, but no consent page.
    const other = new Browser();
    const again = asPage(await other.get(url.href));
    const redirect = asRedirect(await other.submit(again, 'form[action$="/login"]', { email: ALICE.email, password: ALICE.password }));
    assert.match(redirect, /\?code=/);
  });

  test('Deny returns access_denied to the client', async () => {
    const browser = new Browser();
    await server.cli(['users', 'create', '--email', 'carol@example.com', '--password', 'tulip meadow 123']);
    const url = oidc.buildAuthorizationUrl(third, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      state: 's1',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    const login = asPage(await browser.get(url.href));
    const consent = asPage(await browser.submit(login, 'form[action$="/login"]', { email: 'carol@example.com', password: 'tulip meadow 123' }));
    const denied = new URL(asRedirect(await browser.submit(consent, 'form[action$="/abort"]')));
    assert.equal(denied.searchParams.get('error'), 'access_denied');
  });
});

describe('public clients', () => {
  test('must use PKCE', async () => {
    await server.cli(['clients', 'create', '--id', 'spa', '--public', '--first-party', '--redirect-uri', REDIRECT]);
    const spa = await oidc.discovery(new URL(server.issuer), 'spa', undefined, oidc.None(), insecure);
    const url = oidc.buildAuthorizationUrl(spa, { redirect_uri: REDIRECT, scope: 'openid', state: 'x' });
    const cb = new URL(asRedirect(await new Browser().get(url.href)));
    assert.equal(cb.searchParams.get('error'), 'invalid_request');
    assert.match(cb.searchParams.get('error_description') ?? '', /PKCE/);
    const tokens = await loginAndExchange(new Browser(), spa);
    assert.ok(tokens.id_token);
  });
});

describe('bad input', () => {
  async function loginPage(browser: Browser): Promise<Page> {
    const url = oidc.buildAuthorizationUrl(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
      code_challenge_method: 'S256',
    });
    return asPage(await browser.get(url.href));
  }

  test('wrong password and unknown email get the same generic message', async () => {
    const browser = new Browser();
    const page = await loginPage(browser);
    const wrong = asPage(await browser.submit(page, 'form[action$="/login"]', { email: ALICE.email, password: 'not the password' }));
    const unknown = asPage(await browser.submit(page, 'form[action$="/login"]', { email: 'nobody@example.com', password: 'not the password' }));
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    const message = (p: Page) => p.doc.querySelector('[role=alert]')?.text.trim();
    assert.equal(message(wrong), 'Incorrect email or password.');
    assert.equal(message(unknown), message(wrong));
  });

  test('a missing or wrong CSRF token is refused with a 403 page', async () => {
    const browser = new Browser();
    const page = await loginPage(browser);
    const missing = asPage(await browser.submit(page, 'form[action$="/login"]', { email: ALICE.email, password: ALICE.password, _csrf: '' }));
    assert.equal(missing.status, 403);
    assert.match(missing.headers.get('content-type')!, /text\/html/);
    assert.match(missing.html, /did not come from this site/);
    const wrong = asPage(await browser.submit(page, 'form[action$="/login"]', { email: ALICE.email, password: ALICE.password, _csrf: 'forged' }));
    assert.equal(wrong.status, 403);
    // A token from another browser does not work either.
    const otherPage = await loginPage(new Browser());
    const token = otherPage.doc.querySelector('input[name=_csrf]')!.getAttribute('value')!;
    const foreign = asPage(await browser.submit(page, 'form[action$="/login"]', { email: ALICE.email, password: ALICE.password, _csrf: token }));
    assert.equal(foreign.status, 403);
  });

  test('an oversized body is refused with 413', async () => {
    const browser = new Browser();
    const page = await loginPage(browser);
    const res = asPage(await browser.submit(page, 'form[action$="/login"]', { email: ALICE.email, password: 'x'.repeat(200_000) }));
    assert.equal(res.status, 413);
    assert.match(res.html, /too large/);
  });

  test('an unregistered redirect URI gets an error page and no redirect', async () => {
    const url = oidc.buildAuthorizationUrl(rp, { redirect_uri: 'https://evil.example/cb', scope: 'openid' });
    const res = await new Browser().request(url.href);
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('location'), null);
    const html = await res.text();
    assert.match(html, /not set up correctly/);
    assert.doesNotMatch(html, /evil\.example\/cb"/, 'never rendered as a link');
  });

  test('an unknown client gets an error page', async () => {
    const res = await new Browser().request(`${server.issuer}/auth?client_id=nope&response_type=code&scope=openid&redirect_uri=${encodeURIComponent(REDIRECT)}`);
    assert.equal(res.status, 400);
    assert.match(await res.text(), /Unknown application/);
  });

  test('an expired or unknown interaction renders a helpful page', async () => {
    const page = asPage(await new Browser().get(`${server.issuer}/interaction/does-not-exist`));
    assert.equal(page.status, 400);
    assert.match(page.html, /start signing in again/);
  });

  test('malformed JSON gets a 400 JSON error', async () => {
    const browser = new Browser();
    const page = await loginPage(browser);
    const res = await browser.request(page.url + '/login', { method: 'POST', body: '{"email": ', headers: { 'content-type': 'application/json', accept: 'application/json' } });
    assert.equal(res.status, 400);
    const body = (await res.json()) as { error: string; error_description: string };
    assert.equal(body.error, 'invalid_request');
    assert.ok(body.error_description);
    const token = await fetch(`${server.issuer}/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":' });
    assert.equal(token.status, 400);
    assert.equal(((await token.json()) as { error: string }).error, 'invalid_request');
  });
});

describe('operations', () => {
  test('health, readiness, metrics and security headers', async () => {
    const health = await fetch(`${server.issuer}/healthz`);
    assert.equal(health.status, 200);
    const ready = await fetch(`${server.issuer}/readyz`);
    assert.equal(ready.status, 200);
    const metrics = await (await fetch(`${server.issuer}/metrics`)).text();
    assert.match(metrics, /latchkey_tokens_issued_total\{grant_type="authorization_code"\} \d+/);
    assert.match(metrics, /latchkey_http_requests_total\{route="[^"]+",method="GET",status="200"\}/);
    const page = await fetch(`${server.issuer}/interaction/x`);
    const csp = page.headers.get('content-security-policy')!;
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    assert.ok(page.headers.get('x-request-id'));
  });
});
