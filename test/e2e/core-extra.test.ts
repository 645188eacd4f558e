// End to end, beyond the basic flows: back-channel logout, PAR, id_token_hint for another user,
// key rotation, restart persistence, two processes on one database, the audit trail and
// password rules. Real server processes, the real CLI, openid-client v6 as the relying party.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import * as jose from 'jose';
import pg from 'pg';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, insecure, startAuthorization as startRpAuthorization, throughInstance } from '../helpers/rp.ts';
import { loopbackFetchEnv } from '../helpers/allow-loopback-fetch.ts';

const POST_LOGOUT = 'http://localhost:9/bye';
const ALICE = { email: 'alice@example.com', password: 'correct horse battery', name: 'Alice Example' };
const BOB = { email: 'bob@example.com', password: 'bob password 12345', name: 'Bob Example' };
const POSTGRES = Boolean(process.env.DATABASE_URL);
const NEEDS_POSTGRES = 'needs DATABASE_URL: two processes cannot open one embedded PGlite database, and the test reads it directly';

type Credentials = { email: string; password: string };
type Tokens = Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;

let server: TestServer;
let rp: oidc.Configuration;

/** Starts an authorization in `browser` (offline access, consent prompted) and returns the first page (or RP redirect), unsubmitted. */
const startAuthorization = (browser: Browser, config: oidc.Configuration, params: Record<string, string> = {}) =>
  startRpAuthorization(browser, config, { scope: 'openid email profile offline_access', prompt: 'consent', ...params });

const isLoginPage = (step: Page | { redirect: string }): step is Page => isPage(step) && Boolean(step.doc.querySelector('input[name=password]'));

async function submitLogin(browser: Browser, page: Page, credentials: Credentials) {
  return browser.submit(page, 'form[action$="/login"]', { email: credentials.email, password: credentials.password });
}

/** Signs in (submitting the password page when shown) and exchanges the code. */
async function loginAndExchange(browser: Browser, config: oidc.Configuration, credentials: Credentials = ALICE, params: Record<string, string> = {}): Promise<Tokens> {
  let { step, verifier, state } = await startAuthorization(browser, config, params);
  if (isLoginPage(step)) step = await submitLogin(browser, step, credentials);
  return oidc.authorizationCodeGrant(config, new URL(asRedirect(step)), { pkceCodeVerifier: verifier, expectedState: state });
}

/**
 * What a browser does with oidc-provider's self-submitting form_post pages (the test browser
 * runs no scripts): checks that the CSP lets the inline script run, then submits the form.
 */
async function runAutoSubmit(browser: Browser, step: Page | { redirect: string }) {
  for (let i = 0; i < 3 && isPage(step) && step.html.includes('document.forms[0].submit()'); i++) {
    const script = step.doc.querySelector('script')!.rawText;
    const hash = crypto.createHash('sha256').update(script).digest('base64');
    assert.ok(step.headers.get('content-security-policy')?.includes(`'sha256-${hash}'`), 'the CSP allows the auto-submit script');
    step = await browser.submit(step, 'form');
  }
  return step;
}

/** RP-initiated logout through the hosted confirmation page. */
async function logout(browser: Browser, config: oidc.Configuration, idToken: string) {
  const url = oidc.buildEndSessionUrl(config, { id_token_hint: idToken, post_logout_redirect_uri: POST_LOGOUT, state: 'bye' });
  const page = asPage(await browser.get(url.href));
  assert.ok(page.doc.querySelector('button[name=logout]'), 'logout confirmation page');
  const done = asRedirect(await browser.submit(page, 'form', {}, { name: 'logout', value: 'yes' }));
  assert.equal(done, `${POST_LOGOUT}?state=bye`);
}

async function createRp(target: TestServer, id: string, extra: string[] = []) {
  const created = (await target.cli([
    'clients', 'create', '--id', id, '--name', `RP ${id}`, '--first-party',
    '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', POST_LOGOUT,
    '--grant-type', 'authorization_code', '--grant-type', 'refresh_token',
    ...extra,
  ])) as { client_id: string; client_secret: string };
  const config = await oidc.discovery(new URL(target.issuer), id, created.client_secret, undefined, insecure);
  return { config, secret: created.client_secret };
}

async function createUser(target: TestServer, user: Credentials & { name: string }) {
  return (await target.cli(['users', 'create', '--email', user.email, '--password', user.password, '--name', user.name, '--verified'])) as { id: string };
}

const kidOf = (jwt: string) => jose.decodeProtectedHeader(jwt).kid!;

async function publishedKeys(target: TestServer) {
  const res = await fetch(`${target.url}/jwks`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { keys: { kid: string; alg: string }[] }).keys;
}

before(async () => {
  server = await startServer();
  [, , { config: rp }] = await Promise.all([createUser(server, ALICE), createUser(server, BOB), createRp(server, 'rp')]);
});

after(async () => {
  await server?.stop();
});

describe('back-channel logout', () => {
  type Received = { method: string; url: string; contentType: string; body: string };
  // Two loopback RP endpoints: the server may deliver to the first only (see allow-loopback-fetch.ts);
  // the second shows oidc-provider's default refusal to deliver to a loopback address.
  let bcServer: TestServer;
  let endpoint: { server: http.Server; origin: string; received: Received[] };
  let blocked: { server: http.Server; origin: string; received: Received[] };

  async function rpEndpoint() {
    const received: Received[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        received.push({ method: req.method!, url: req.url!, contentType: String(req.headers['content-type']), body });
        res.writeHead(200, { 'cache-control': 'no-store' }).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
  }

  before(async () => {
    endpoint = await rpEndpoint();
    blocked = await rpEndpoint();
    bcServer = await startServer(loopbackFetchEnv(endpoint.origin));
    await createUser(bcServer, ALICE);
  });

  after(async () => {
    await bcServer?.stop();
    for (const { server } of [endpoint, blocked]) {
      server?.closeAllConnections();
      await new Promise((resolve) => server?.close(resolve) ?? resolve(undefined));
    }
  });

  test('RP-initiated logout delivers a verifiable logout token to the RP', async () => {
    const { config: bc } = await createRp(bcServer, 'bc', ['--backchannel-logout-uri', `${endpoint.origin}/bc`]);
    const browser = new Browser();
    const tokens = await loginAndExchange(browser, bc);
    const idClaims = tokens.claims()!;
    assert.equal(endpoint.received.length, 0);

    await logout(browser, bc, tokens.id_token!);

    // Delivery is awaited by the provider before it redirects, so it has arrived by now.
    assert.equal(endpoint.received.length, 1, `exactly one back-channel request; server log:\n${bcServer.logs.filter((l) => l.includes('backchannel')).join('')}`);
    const request = endpoint.received[0]!;
    assert.equal(request.method, 'POST');
    assert.equal(request.url, '/bc');
    assert.match(request.contentType, /^application\/x-www-form-urlencoded/);
    const logoutToken = new URLSearchParams(request.body).get('logout_token');
    assert.ok(logoutToken, 'logout_token posted');

    const jwks = jose.createRemoteJWKSet(new URL(bc.serverMetadata().jwks_uri!));
    const { payload, protectedHeader } = await jose.jwtVerify(logoutToken, jwks, { issuer: bcServer.issuer, audience: 'bc', typ: 'logout+jwt' });
    assert.equal(protectedHeader.alg, 'RS256');
    assert.equal(payload.sub, idClaims.sub);
    assert.ok(payload.sid, 'sid present (backchannel_logout_session_required)');
    assert.equal(payload.sid, idClaims.sid, 'the session named in the ID token');
    assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
    assert.ok(payload.jti);
    assert.ok(payload.iat);
    assert.equal(payload.nonce, undefined, 'a logout token never carries a nonce');

    // The session is gone: prompt=none now fails.
    const { step } = await startAuthorization(browser, bc, { prompt: 'none' });
    assert.equal(new URL(asRedirect(step)).searchParams.get('error'), 'login_required');
  });

  test('a delivery the provider refuses does not block the logout, and is logged without the client secret', async () => {
    const { config, secret } = await createRp(bcServer, 'bc-loopback', ['--backchannel-logout-uri', `${blocked.origin}/bc`]);
    const browser = new Browser();
    const tokens = await loginAndExchange(browser, config);
    const logsBefore = bcServer.logs.length;
    await logout(browser, config, tokens.id_token!);
    // oidc-provider's SSRF protection: no connection to a loopback address.
    assert.equal(blocked.received.length, 0);

    const lines = bcServer.logs.slice(logsBefore).join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    const failure = lines.find((l) => l.event === 'backchannel.error');
    assert.ok(failure, 'the failed delivery is logged');
    assert.ok(!JSON.stringify(lines).includes(secret), 'the log never contains the client secret');
    assert.equal(failure.clientId, 'bc-loopback', 'the log names the client by its id');
  });
});

describe('pushed authorization requests', () => {
  test('a pushed request completes through the hosted pages', async () => {
    const browser = new Browser();
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const url = await oidc.buildAuthorizationUrlWithPAR(rp, {
      redirect_uri: REDIRECT,
      scope: 'openid email offline_access',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      prompt: 'consent',
    });
    // The front channel only carries the reference, never the parameters.
    assert.match(url.searchParams.get('request_uri') ?? '', /^urn:ietf:params:oauth:request_uri:/);
    assert.equal(url.searchParams.get('redirect_uri'), null);
    assert.equal(url.searchParams.get('scope'), null);

    const login = asPage(await browser.get(url.href));
    assert.ok(isLoginPage(login), 'sign-in page shown');
    const callback = new URL(asRedirect(await submitLogin(browser, login, ALICE)));
    const tokens = await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: verifier, expectedState: state });
    assert.ok(tokens.access_token);
    assert.ok(tokens.refresh_token);
    assert.equal(tokens.claims()!.email, ALICE.email);

    // A request_uri is single-use.
    const again = new URL(asRedirect(await new Browser().get(url.href)));
    assert.equal(again.searchParams.get('error'), 'invalid_request_uri');
  });
});

describe('id_token_hint naming another user', () => {
  test('shows the sign-in page instead of silently issuing a code for the session user', async () => {
    const alicesBrowser = new Browser('alice-browser');
    const alice = await loginAndExchange(alicesBrowser, rp, ALICE);
    const bob = await loginAndExchange(new Browser('bob-browser'), rp, BOB);
    const aliceSub = alice.claims()!.sub;
    const bobSub = bob.claims()!.sub;
    assert.notEqual(aliceSub, bobSub);

    // prompt=none cannot show the page: login_required at the redirect URI.
    const silent = await startAuthorization(alicesBrowser, rp, { prompt: 'none', id_token_hint: bob.id_token! });
    const cb = new URL(asRedirect(silent.step));
    assert.equal(cb.searchParams.get('error'), 'login_required');
    assert.equal(cb.searchParams.get('state'), silent.state);
    assert.equal(cb.searchParams.get('code'), null);

    // Interactive: the sign-in page again, not a code for Alice.
    const hinted = await startAuthorization(alicesBrowser, rp, { id_token_hint: bob.id_token! });
    assert.ok(isLoginPage(hinted.step), `expected the sign-in page, got ${isPage(hinted.step) ? hinted.step.url : hinted.step.redirect}`);

    // Alice's session itself is untouched: without the hint she still gets a code silently.
    const plain = await startAuthorization(alicesBrowser, rp);
    const plainTokens = await oidc.authorizationCodeGrant(rp, new URL(asRedirect(plain.step)), { pkceCodeVerifier: plain.verifier, expectedState: plain.state });
    assert.equal(plainTokens.claims()!.sub, aliceSub);

    // Signing in as Bob on the hinted page ends Alice's session (oidc-provider's self-submitting
    // logout form) and yields Bob's tokens.
    const hinted2 = await startAuthorization(alicesBrowser, rp, { id_token_hint: bob.id_token! });
    const done = await runAutoSubmit(alicesBrowser, await submitLogin(alicesBrowser, asPage(hinted2.step), BOB));
    const bobAgain = await oidc.authorizationCodeGrant(rp, new URL(asRedirect(done)), { pkceCodeVerifier: hinted2.verifier, expectedState: hinted2.state });
    assert.equal(bobAgain.claims()!.sub, bobSub);
    const after = await startAuthorization(alicesBrowser, rp);
    const afterTokens = await oidc.authorizationCodeGrant(rp, new URL(asRedirect(after.step)), { pkceCodeVerifier: after.verifier, expectedState: after.state });
    assert.equal(afterTokens.claims()!.sub, bobSub, "the browser's session is now Bob's");
  });
});

describe('password rules', () => {
  test('sign-up refuses a 129-character password and creates no user', async () => {
    const browser = new Browser();
    const { step } = await startAuthorization(browser, rp);
    const login = asPage(step);
    const signup = asPage(await browser.get(login.url + '/signup'));
    const email = 'toolong@example.com';
    const page = asPage(await browser.submit(signup, 'form[action$="/signup"]', { name: 'Long', email, password: 'p'.repeat(129) }));
    assert.equal(page.status, 400);
    assert.equal(page.doc.querySelector('#password-error')?.text.trim(), 'Use at most 128 characters.');
    assert.equal(page.doc.querySelector('#password')?.getAttribute('aria-invalid'), 'true');
    const users = (await server.cli(['users', 'list'])) as { email: string }[];
    assert.ok(!users.some((u) => u.email === email), 'no user created');

    // Exactly 128 is fine: the sign-up goes on to its confirmation mail.
    const ok = asPage(await browser.submit(page, 'form[action$="/signup"]', { name: 'Long', email, password: 'p'.repeat(128) }));
    assert.equal(ok.status, 200);
    assert.equal(ok.doc.querySelector('h1')?.text.trim(), 'Check your email');
  });

  test('users create refuses a 7-character password with exit code 2', async () => {
    const r = await server.cliRaw(['users', 'create', '--email', 'short@example.com', '--password', 'seven77', '--json']);
    assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
    assert.match(r.stderr, /at least 8 characters/);
    const users = (await server.cli(['users', 'list'])) as { email: string }[];
    assert.ok(!users.some((u) => u.email === 'short@example.com'), 'no user created');
  });
});

describe('signing key rotation', () => {
  let keysServer: TestServer;
  let config: oidc.Configuration;

  before(async () => {
    // With PostgreSQL the CLI runs in its own process and the server notices by polling.
    keysServer = await startServer({ KEY_CHECK_INTERVAL: '1' });
    [, { config }] = await Promise.all([createUser(keysServer, ALICE), createRp(keysServer, 'rp')]);
  });

  after(async () => {
    await keysServer?.stop();
  });

  test('new keys sign new tokens; old keys stay published and old tokens verify', async () => {
    const oldTokens = await loginAndExchange(new Browser(), config);
    const oldKid = kidOf(oldTokens.id_token!);
    const before = await publishedKeys(keysServer);
    assert.deepEqual(before.map((k) => k.alg).sort(), ['ES256', 'RS256']);
    assert.ok(before.some((k) => k.kid === oldKid));

    const rotated = (await keysServer.cli(['keys', 'rotate'])) as { created: { kid: string; alg: string }[]; rotated: string[] };
    assert.deepEqual(rotated.created.map((k) => k.alg).sort(), ['ES256', 'RS256']);
    assert.deepEqual([...rotated.rotated].sort(), before.map((k) => k.kid).sort());
    const newKids = rotated.created.map((k) => k.kid);
    const newRs256 = rotated.created.find((k) => k.alg === 'RS256')!.kid;

    let keys = await publishedKeys(keysServer);
    const deadline = Date.now() + 10_000;
    while (!newKids.every((kid) => keys.some((k) => k.kid === kid)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      keys = await publishedKeys(keysServer);
    }
    const kids = keys.map((k) => k.kid);
    assert.ok(kids.includes(oldKid), 'old kid still published');
    for (const kid of newKids) assert.ok(kids.includes(kid), `new kid ${kid} published`);
    assert.equal(keys.length, 4, 'two generations of RS256 + ES256');

    const newTokens = await loginAndExchange(new Browser(), config);
    assert.equal(kidOf(newTokens.id_token!), newRs256, 'signed with the new RS256 key');
    assert.equal(jose.decodeProtectedHeader(newTokens.id_token!).alg, 'RS256');

    const jwks = jose.createRemoteJWKSet(new URL(`${keysServer.url}/jwks`));
    for (const token of [oldTokens.id_token!, newTokens.id_token!]) {
      await jose.jwtVerify(token, jwks, { issuer: keysServer.issuer, audience: 'rp' });
    }
    // Tokens issued before the rotation keep working at the other endpoints too.
    assert.ok((await oidc.refreshTokenGrant(config, oldTokens.refresh_token!)).access_token);

    const listed = (await keysServer.cli(['keys', 'list'])) as { kid: string; alg: string; rotated_at: string | null; retire_after: string | null }[];
    assert.equal(listed.length, 4);
    const current = listed.filter((k) => !k.rotated_at);
    const retiring = listed.filter((k) => k.rotated_at);
    assert.deepEqual(current.map((k) => k.kid).sort(), [...newKids].sort());
    assert.deepEqual(retiring.map((k) => k.kid).sort(), before.map((k) => k.kid).sort());
    for (const k of retiring) assert.ok(new Date(k.retire_after!).getTime() > Date.now(), 'retiring keys have a future retire_after');
  });
});

describe('restart persistence', () => {
  let restartable: TestServer;
  let config: oidc.Configuration;

  before(async () => {
    restartable = await startServer();
    [, { config }] = await Promise.all([createUser(restartable, ALICE), createRp(restartable, 'rp')]);
  });

  after(async () => {
    await restartable?.stop();
  });

  test('sessions, refresh tokens, users and keys survive a restart', async () => {
    const browser = new Browser();
    const tokens = await loginAndExchange(browser, config);
    const kid = kidOf(tokens.id_token!);

    await restartable.restart();

    // The same browser's session still works: a code without the password page.
    const { step, verifier, state } = await startAuthorization(browser, config);
    assert.ok(!isPage(step), 'no sign-in page after the restart');
    const again = await oidc.authorizationCodeGrant(config, new URL(asRedirect(step)), { pkceCodeVerifier: verifier, expectedState: state });
    assert.equal(again.claims()!.sub, tokens.claims()!.sub);
    assert.equal(kidOf(again.id_token!), kid, 'signing keys persisted');

    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    assert.ok(refreshed.access_token);
    assert.equal((await oidc.tokenIntrospection(config, refreshed.access_token)).active, true);

    const users = (await restartable.cli(['users', 'list'])) as { email: string }[];
    assert.ok(users.some((u) => u.email === ALICE.email));
  });
});

describe('two server processes on one PostgreSQL database', { skip: POSTGRES ? false : NEEDS_POSTGRES }, () => {
  let a: TestServer;
  let b: TestServer;
  let viaA: oidc.Configuration;
  let viaB: oidc.Configuration;

  before(async () => {
    a = await startServer();
    let secret: string;
    [b, , { config: viaA, secret }] = await Promise.all([a.startAnother({ shareIssuer: true }), createUser(a, ALICE), createRp(a, 'rp')]);
    assert.equal(b.issuer, a.issuer);
    assert.notEqual(b.url, a.url);
    viaB = throughInstance(viaA, b.url, secret);
  });

  after(async () => {
    await b?.stop();
    await a?.stop();
  });

  test('front channel on A, token endpoint on B, revocation shared', async () => {
    const browser = new Browser();
    let { step, verifier, state } = await startAuthorization(browser, viaA);
    step = await submitLogin(browser, asPage(step), ALICE);
    // The code issued by A is redeemed at B.
    const tokens = await oidc.authorizationCodeGrant(viaB, new URL(asRedirect(step)), { pkceCodeVerifier: verifier, expectedState: state });
    assert.equal(tokens.claims()!.iss, a.issuer);
    assert.equal(tokens.claims()!.email, ALICE.email);

    const refreshed = await oidc.refreshTokenGrant(viaB, tokens.refresh_token!);
    assert.ok(refreshed.access_token);
    assert.equal((await oidc.fetchUserInfo(viaB, refreshed.access_token, tokens.claims()!.sub)).email, ALICE.email);

    // A sees B's token; revoking at A kills it for B.
    const seenByA = await oidc.tokenIntrospection(viaA, refreshed.access_token);
    assert.equal(seenByA.active, true);
    assert.equal(seenByA.sub, tokens.claims()!.sub);
    await oidc.tokenRevocation(viaA, refreshed.access_token);
    assert.equal((await oidc.tokenIntrospection(viaB, refreshed.access_token)).active, false);

    await oidc.tokenRevocation(viaA, refreshed.refresh_token!);
    await assert.rejects(oidc.refreshTokenGrant(viaB, refreshed.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
  });

  test('a code redeemed at B and replayed at A is refused, and revokes what B issued', async () => {
    const browser = new Browser();
    const { step, verifier, state } = await startAuthorization(browser, viaA);
    const callback = new URL(asRedirect(await submitLogin(browser, asPage(step), ALICE)));
    const tokens = await oidc.authorizationCodeGrant(viaB, callback, { pkceCodeVerifier: verifier, expectedState: state });
    assert.equal((await oidc.tokenIntrospection(viaA, tokens.access_token)).active, true);
    await assert.rejects(
      oidc.authorizationCodeGrant(viaA, callback, { pkceCodeVerifier: verifier, expectedState: state }),
      (err: oidc.ResponseBodyError) => err.error === 'invalid_grant',
    );
    assert.equal((await oidc.tokenIntrospection(viaB, tokens.access_token)).active, false, 'the replay revoked the grant');
    await assert.rejects(oidc.refreshTokenGrant(viaB, tokens.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
  });
});

describe('audit trail', { skip: POSTGRES ? false : NEEDS_POSTGRES }, () => {
  let audited: TestServer;
  let config: oidc.Configuration;
  let secret: string;
  let aliceId: string;

  before(async () => {
    // No reuse grace: the replay below comes right after the rotation (the grace is tested in refresh-tokens.test.ts).
    audited = await startServer({ REFRESH_REUSE_GRACE: '0' });
    [{ id: aliceId }, { config, secret }] = await Promise.all([createUser(audited, ALICE), createRp(audited, 'rp')]);
  });

  after(async () => {
    await audited?.stop();
  });

  test('records sign-ins, tokens, reuse and logout with who, where and no secrets', async () => {
    const browser = new Browser('audit-test-agent/1.0');
    const secrets: string[] = [ALICE.password, secret];

    let { step, verifier, state } = await startAuthorization(browser, config);
    const failed = asPage(await submitLogin(browser, asPage(step), { email: ALICE.email, password: 'the wrong password' }));
    assert.equal(failed.status, 401);
    secrets.push('the wrong password');
    step = await submitLogin(browser, failed, ALICE);
    const callback = new URL(asRedirect(step));
    secrets.push(callback.searchParams.get('code')!);
    const tokens = await oidc.authorizationCodeGrant(config, callback, { pkceCodeVerifier: verifier, expectedState: state });
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    secrets.push(tokens.access_token, tokens.refresh_token!, tokens.id_token!, refreshed.access_token, refreshed.refresh_token!, refreshed.id_token!);
    await assert.rejects(oidc.refreshTokenGrant(config, tokens.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');

    const fresh = await loginAndExchange(browser, config);
    secrets.push(fresh.access_token, fresh.refresh_token!, fresh.id_token!);
    await logout(browser, config, fresh.id_token!);

    const db = new pg.Client({ connectionString: audited.env.DATABASE_URL });
    await db.connect();
    try {
      type Row = { type: string; user_id: string | null; client_id: string | null; ip: string | null; user_agent: string | null; data: Record<string, unknown> };
      const wanted = ['login.failure', 'login.success', 'token.issued', 'token.reuse_detected', 'logout'];
      let rows: Row[] = [];
      // Provider-event audits are written without delaying the response: give them a moment.
      const deadline = Date.now() + 5_000;
      do {
        rows = (await db.query<Row>('SELECT type, user_id, client_id, ip, user_agent, data FROM audit_events ORDER BY id')).rows;
        if (wanted.every((t) => rows.some((r) => r.type === t)) && rows.filter((r) => r.type === 'token.issued').length >= 3) break;
        await new Promise((r) => setTimeout(r, 100));
      } while (Date.now() < deadline);
      const ofType = (type: string) => rows.filter((r) => r.type === type);
      const first = (type: string) => ofType(type)[0]!;
      for (const type of wanted) assert.ok(ofType(type).length > 0, `an audit row of type ${type} (got ${rows.map((r) => r.type).join(', ')})`);

      const failure = first('login.failure');
      assert.equal(failure.client_id, 'rp');
      assert.equal(failure.data.method, 'password');
      assert.equal(first('login.success').user_id, aliceId);
      const issued = ofType('token.issued');
      // Written without delaying the response, so rows of back-to-back requests may be out of order.
      assert.deepEqual(issued.map((r) => String(r.data.grantType)).sort(), ['authorization_code', 'authorization_code', 'refresh_token']);
      for (const r of issued) assert.equal(r.user_id, aliceId, `token.issued (${r.data.grantType}) names the user`);
      assert.equal(first('token.reuse_detected').user_id, aliceId);
      assert.equal(first('logout').user_id, aliceId);
      assert.equal(first('logout').client_id, 'rp');

      // Everything done over HTTP knows where it came from.
      for (const r of rows.filter((r) => wanted.includes(r.type))) {
        assert.ok(r.ip, `${r.type} has an ip`);
        assert.ok(r.user_agent, `${r.type} has a user agent`);
      }
      for (const type of ['login.failure', 'login.success', 'logout']) {
        assert.equal(first(type).user_agent, 'audit-test-agent/1.0', `${type} records the browser's user agent`);
      }

      const dump = JSON.stringify(rows);
      assert.ok(!dump.includes(ALICE.email), 'no email address in the audit trail');
      for (const value of secrets) assert.ok(!dump.includes(value), `no secret value in the audit trail (${value.slice(0, 12)}…)`);
    } finally {
      await db.end();
    }
  });
});
