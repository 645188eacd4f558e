// Device sessions, as a user and as an attacker would meet them: the devices page (HTML and
// JSON) and signing one device, every other device or every device out (its tokens die at once,
// back-channel RPs are told, nothing else is touched); the operator CLI; idle and absolute
// timeouts on the real clock; the session id rotating on sign-in, step-up and password change
// (the old cookie replayed is refused); new-device audit and mail (once per device per day);
// the login history; and password change with its policy and budget. Real server, real SMTP sink,
// openid-client as the RP, a loopback back-channel logout endpoint.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import * as jose from 'jose';
import * as oidc from 'openid-client';
import { loopbackFetchEnv } from '../helpers/allow-loopback-fetch.ts';
import { Browser, asPage, asRedirect, type Page } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';
import { Authenticator } from '../helpers/totp.ts';
import { REDIRECT, authorize, insecure, startAuthorization, type Credentials } from '../helpers/rp.ts';

const POSTGRES = Boolean(process.env.DATABASE_URL);
const NEEDS_POSTGRES = 'needs DATABASE_URL: embedded PGlite has one connection, so requests are never in flight at once';
const CHROME_MAC = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';
const FIREFOX_WIN = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0';
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1';
const OFFLINE = { scope: 'openid email offline_access', prompt: 'consent' };
const MFA = 'urn:latchkey:acr:mfa';

/** A browser behind our (trusted) proxy: every request says it comes from `ip`. */
class ProxiedBrowser extends Browser {
  readonly ip: string;
  constructor(userAgent: string, ip: string) {
    super(userAgent);
    this.ip = ip;
  }
  override request(url: string, init: Parameters<Browser['request']>[1] = {}) {
    return super.request(url, { ...init, headers: { 'x-forwarded-for': this.ip, ...init.headers } });
  }
}

let sink: SmtpSink;
let server: TestServer;
let app: oidc.Configuration;
let backchannel: { server: http.Server; origin: string; tokens: string[] };
let userCounter = 0;

interface User extends Credentials {
  id: string;
  name: string;
}

async function createUser(srv: TestServer, prefix: string): Promise<User> {
  const email = `${prefix}${++userCounter}@example.com`;
  // Unique, and built from nothing the password policy refuses (the address, the name, the product).
  const password = `violet teapot orbit ${userCounter}`;
  const name = `Person ${userCounter}`;
  const { id } = (await srv.cli(['users', 'create', '--email', email, '--password', password, '--name', name, '--verified'])) as { id: string };
  return { id, email, password, name };
}

/** Signs into the account pages through the hosted sign-in; returns the page it lands on. */
async function signIntoAccount(browser: Browser, srv: TestServer, user: Credentials, path = '/account', remember = false): Promise<Page> {
  const login = asPage(await browser.get(`${srv.issuer}${path}`));
  assert.ok(login.doc.querySelector('form[action$="/login"]'), `the sign-in page, got ${login.url}`);
  // The test browser sends every input, checked or not: an unticked box is sent empty.
  return asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password, remember: remember ? 'yes' : '' }));
}

/** One RP sign-in with a refresh token on `browser`. */
async function rpSignIn(browser: Browser, user: Credentials, params: Record<string, string> = OFFLINE) {
  const outcome = await authorize(app, browser, user, params);
  assert.ok(outcome.tokens, `tokens after ${outcome.pages.join(' → ')} (${outcome.callback?.search ?? 'no callback'})`);
  return outcome.tokens;
}

async function active(token: string): Promise<boolean> {
  return (await oidc.tokenIntrospection(app, token)).active;
}

/** Whether the browser still has a session at the IdP: a silent authorization gets a code. */
async function hasSession(browser: Browser, config = app): Promise<boolean> {
  const { step } = await startAuthorization(browser, config, { prompt: 'none' });
  const callback = new URL(asRedirect(step));
  // A code, or consent still to give for this request: either way the sign-in is still there.
  if (callback.searchParams.get('code') || callback.searchParams.get('error') === 'consent_required') return true;
  assert.equal(callback.searchParams.get('error'), 'login_required');
  return false;
}

async function sessionsJson(browser: Browser, srv = server) {
  const res = await browser.request(`${srv.issuer}/account/sessions`, { headers: { accept: 'application/json' } });
  assert.equal(res.status, 200, `sessions JSON: ${res.status}`);
  return (await res.json()) as { id: string; device: string; ip: string; created_at: string; last_active_at: string; current: boolean; methods: string[]; acr: string }[];
}

/** The CSRF token of a rendered page of this browser (one token serves the browser's requests). */
async function csrfOf(browser: Browser, url: string): Promise<string> {
  const page = asPage(await browser.get(url));
  const token = page.doc.querySelector('input[name=_csrf]')?.getAttribute('value');
  assert.ok(token, `a CSRF token on ${url}`);
  return token;
}

/** The session cookie (value and signature) as an attacker who copied it would hold it. */
async function sessionCookies(browser: Browser, srv = server): Promise<string[]> {
  const cookies = (await browser.jar.getCookies(srv.issuer)).filter((c) => c.key === 'lk.session' || c.key === 'lk.session.sig');
  assert.equal(cookies.length, 2, 'a signed session cookie');
  return cookies.map((c) => `${c.key}=${c.value}`);
}

async function browserWithCookies(cookies: string[], srv = server): Promise<Browser> {
  const browser = new Browser(CHROME_MAC);
  for (const c of cookies) await browser.jar.setCookie(`${c}; Path=/`, srv.issuer);
  return browser;
}

/** True when the browser's cookies reach the account page (and not the sign-in page). */
async function signedIn(browser: Browser, srv = server): Promise<boolean> {
  const page = asPage(await browser.get(`${srv.issuer}/account`));
  return !page.doc.querySelector('form[action$="/login"]') && page.doc.querySelector('h1')?.text.trim() === 'Your account';
}

function auditEvents(type: string, userId: string): Record<string, unknown>[] {
  return server.logs
    .join('')
    .split('\n')
    .flatMap((line) => {
      try {
        const entry = JSON.parse(line) as { event?: string; audit?: { type: string; user_id: string | null; data: Record<string, unknown> } };
        return entry.event === 'audit' && entry.audit?.type === type && entry.audit.user_id === userId ? [entry.audit.data] : [];
      } catch {
        return [];
      }
    });
}

before(async () => {
  sink = new SmtpSink();
  await sink.start();
  const tokens: string[] = [];
  const rp = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const token = new URLSearchParams(body).get('logout_token');
      if (token) tokens.push(token);
      res.writeHead(200, { 'cache-control': 'no-store' }).end();
    });
  });
  await new Promise<void>((resolve) => rp.listen(0, '127.0.0.1', resolve));
  backchannel = { server: rp, origin: `http://127.0.0.1:${(rp.address() as AddressInfo).port}`, tokens };
  server = await startServer({
    SMTP_URL: `smtp://127.0.0.1:${sink.port}`,
    MAIL_POLL_INTERVAL: '1',
    // X-Forwarded-For names the client: lets one machine play devices at several addresses.
    TRUST_PROXY: 'true',
    ...loopbackFetchEnv(backchannel.origin),
  });
  const created = (await server.cli([
    'clients', 'create', '--id', 'app', '--first-party', '--redirect-uri', REDIRECT,
    '--grant-type', 'authorization_code', '--grant-type', 'refresh_token',
    '--backchannel-logout-uri', `${backchannel.origin}/logout`,
  ])) as { client_secret: string };
  app = await oidc.discovery(new URL(server.issuer), 'app', created.client_secret, undefined, insecure);
});

after(async () => {
  await server?.stop();
  await sink?.stop();
  backchannel?.server.closeAllConnections();
  await new Promise((resolve) => backchannel?.server.close(resolve) ?? resolve(undefined));
});

describe('the devices page', () => {
  test('lists each signed-in device (HTML and JSON) with name, IP, times, methods, acr; this one marked', async () => {
    const user = await createUser(server, 'list');
    const mac = new ProxiedBrowser(CHROME_MAC, '198.51.100.7');
    const win = new ProxiedBrowser(FIREFOX_WIN, '198.51.100.8');
    await signIntoAccount(mac, server, user);
    await signIntoAccount(win, server, user);

    const list = await sessionsJson(mac);
    assert.equal(list.length, 2);
    const [current, other] = [list.find((s) => s.current)!, list.find((s) => !s.current)!];
    assert.equal(current.device, 'Chrome on macOS');
    assert.equal(current.ip, '198.51.100.7');
    assert.deepEqual(current.methods, ['password']);
    assert.equal(current.acr, 'urn:latchkey:acr:pwd');
    assert.ok(Date.now() - Date.parse(current.created_at) < 60_000 && Date.now() - Date.parse(current.last_active_at) < 60_000);
    assert.equal(other.device, 'Firefox on Windows');
    assert.equal(other.ip, '198.51.100.8');
    assert.deepEqual(Object.keys(current).sort(), ['acr', 'created_at', 'current', 'device', 'id', 'ip', 'last_active_at', 'methods'].sort());

    const page = asPage(await mac.get(`${server.issuer}/account/sessions`));
    assert.equal(page.status, 200);
    assert.match(page.html, /Chrome on macOS/);
    assert.match(page.html, /Firefox on Windows/);
    assert.match(page.html, /This device/);
    assert.ok(page.doc.querySelector('nav.account-nav a[aria-current="page"][href^="/account/sessions"]'), 'the console navigation marks this section');
    assert.equal(page.doc.querySelectorAll('form[action$="/revoke"]').length, 2);
    assert.ok(page.doc.querySelector('form[action="/account/sessions/revoke-others"]'));

    // Without a session: JSON gets a 401, a page the hosted sign-in.
    const res = await new Browser().request(`${server.issuer}/account/sessions`, { headers: { accept: 'application/json' } });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
  });

  test('signing out one device kills its session and its tokens at once, tells its RP, and leaves the other device alone', async () => {
    const user = await createUser(server, 'revoke');
    const a = new Browser(CHROME_MAC);
    const b = new Browser(FIREFOX_WIN);
    const aTokens = await rpSignIn(a, user);
    const bTokens = await rpSignIn(b, user);
    const bSid = bTokens.claims()!.sid;
    assert.ok(bSid && aTokens.refresh_token && bTokens.refresh_token);
    const bRotated = await oidc.refreshTokenGrant(app, bTokens.refresh_token!);
    const logoutsBefore = backchannel.tokens.length;

    const page = asPage(await a.get(`${server.issuer}/account/sessions`));
    const bId = (await sessionsJson(a)).find((s) => !s.current)!.id;
    const done = asPage(await a.submit(page, `form[action="/account/sessions/${bId}/revoke"]`));
    assert.equal(new URL(done.url).pathname, '/account/sessions');
    assert.match(done.html, /That device was signed out/);

    // B: every token issued under its session is dead at once; the browser is signed out.
    assert.equal(await active(bTokens.access_token), false);
    assert.equal(await active(bRotated.access_token), false);
    await assert.rejects(oidc.refreshTokenGrant(app, bRotated.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    assert.equal(await hasSession(b), false);
    // A: untouched.
    assert.equal(await active(aTokens.access_token), true);
    const aRefreshed = await oidc.refreshTokenGrant(app, aTokens.refresh_token!);
    assert.equal(await active(aRefreshed.access_token), true);
    assert.equal(await hasSession(a), true);
    assert.deepEqual((await sessionsJson(a)).map((s) => s.current), [true]);

    // B's RP was told, with a logout token for B's session only.
    const delivered = backchannel.tokens.slice(logoutsBefore);
    assert.equal(delivered.length, 1);
    const jwks = jose.createRemoteJWKSet(new URL(app.serverMetadata().jwks_uri!));
    const { payload } = await jose.jwtVerify(delivered[0]!, jwks, { issuer: server.issuer, audience: 'app', typ: 'logout+jwt' });
    assert.equal(payload.sid, bSid);
    assert.equal(payload.sub, user.id);
    assert.equal(auditEvents('session.revoked', user.id).length, 1);
  });

  test('attacks: no CSRF token, another user\'s session id, a made-up id', async () => {
    const victim = await createUser(server, 'victim');
    const attacker = await createUser(server, 'attacker');
    const v = new Browser(CHROME_MAC);
    const x = new Browser(FIREFOX_WIN);
    await signIntoAccount(v, server, victim);
    await signIntoAccount(x, server, attacker);
    const victimId = (await sessionsJson(v))[0]!.id;

    // A cross-site form post carries the cookies but no token.
    const forged = await v.request(`${server.issuer}/account/sessions/revoke-all`, { method: 'POST', body: new URLSearchParams() });
    assert.equal(forged.status, 403);
    const forgedJson = await v.request(`${server.issuer}/account/sessions/${victimId}/revoke`, { method: 'POST', headers: { accept: 'application/json', 'x-csrf-token': 'forged' } });
    assert.equal(forgedJson.status, 403);
    assert.equal(await signedIn(v), true, 'nothing was revoked');

    const token = await csrfOf(x, `${server.issuer}/account/sessions`);
    for (const id of [victimId, '00000000-0000-4000-8000-000000000000', 'not-a-uuid']) {
      const res = await x.request(`${server.issuer}/account/sessions/${id}/revoke`, { method: 'POST', headers: { accept: 'application/json', 'x-csrf-token': token } });
      assert.equal(res.status, 404, `revoking ${id}`);
      assert.equal(((await res.json()) as { error: string }).error, 'not_found');
    }
    assert.equal(await signedIn(v), true, 'the victim is still signed in');
  });

  test('sign out every other device, then everywhere (JSON with the CSRF header)', async () => {
    const user = await createUser(server, 'others');
    const [a, b, c] = [new Browser(CHROME_MAC), new Browser(FIREFOX_WIN), new Browser(SAFARI_IPHONE)];
    const aTokens = await rpSignIn(a, user);
    const bTokens = await rpSignIn(b, user);
    await signIntoAccount(c, server, user);
    assert.equal((await sessionsJson(a)).length, 3);

    const token = await csrfOf(a, `${server.issuer}/account/sessions`);
    const res = await a.request(`${server.issuer}/account/sessions/revoke-others`, { method: 'POST', headers: { accept: 'application/json', 'x-csrf-token': token } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { revoked: 2, signed_out: false });
    assert.equal(await signedIn(b), false);
    assert.equal(await signedIn(c), false);
    assert.equal(await active(bTokens.access_token), false);
    assert.equal(await active(aTokens.access_token), true);
    assert.equal(await signedIn(a), true);

    const all = await a.request(`${server.issuer}/account/sessions/revoke-all`, { method: 'POST', headers: { accept: 'application/json', 'x-csrf-token': token } });
    assert.deepEqual(await all.json(), { revoked: 1, signed_out: true });
    assert.equal(await signedIn(a), false);
    assert.equal(await active(aTokens.access_token), false);
    await assert.rejects(oidc.refreshTokenGrant(app, aTokens.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
  });

  test('revocations are budgeted per user (30 an hour): the 31st is refused before any work', async () => {
    const user = await createUser(server, 'budget');
    const a = new Browser(CHROME_MAC);
    await signIntoAccount(a, server, user);
    const token = await csrfOf(a, `${server.issuer}/account/sessions`);
    const post = () => a.request(`${server.issuer}/account/sessions/revoke-others`, { method: 'POST', headers: { accept: 'application/json', 'x-csrf-token': token } });
    for (let i = 0; i < 30; i++) assert.equal((await post()).status, 200, `revocation ${i + 1}`);
    const refused = await post();
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) > 0);
  });
});

describe('operator CLI', () => {
  test('sessions list --user, sessions revoke ID, sessions revoke --user', async () => {
    const user = await createUser(server, 'cli');
    const a = new Browser(CHROME_MAC);
    const b = new Browser(FIREFOX_WIN);
    await signIntoAccount(a, server, user);
    const bTokens = await rpSignIn(b, user);

    const listed = (await server.cli(['sessions', 'list', '--user', user.email])) as { id: string; device: string; ip: string; methods: string[]; acr: string }[];
    assert.deepEqual(listed.map((s) => s.device).sort(), ['Chrome on macOS', 'Firefox on Windows']);
    const human = await server.cliRaw(['sessions', 'list', '--user', user.email]);
    assert.equal(human.code, 0);
    assert.match(human.stdout, /Firefox on Windows/);

    const bId = listed.find((s) => s.device === 'Firefox on Windows')!.id;
    const revoked = (await server.cli(['sessions', 'revoke', bId])) as { sessions: number };
    assert.equal(revoked.sessions, 1);
    assert.equal(await active(bTokens.access_token), false);
    assert.equal(await signedIn(b), false);
    assert.equal(await signedIn(a), true);
    assert.equal((await server.cliRaw(['sessions', 'revoke', bId])).code, 1, 'an ended session is not found');

    const all = (await server.cli(['sessions', 'revoke', '--user', user.email])) as { sessions: number };
    assert.equal(all.sessions, 1);
    assert.equal(await signedIn(a), false);
    assert.equal((await server.cliRaw(['sessions', 'list', '--user', 'nobody@example.com'])).code, 1);
    assert.equal((await server.cliRaw(['sessions', 'revoke'])).code, 2);
  });
});

describe('session id rotation: the old cookie stops working', () => {
  test('on sign-in (prompt=login on an existing session)', async () => {
    const user = await createUser(server, 'rotate-signin');
    const browser = new Browser(CHROME_MAC);
    await signIntoAccount(browser, server, user);
    const before = await sessionCookies(browser);
    await rpSignIn(browser, user, { prompt: 'login' });
    const after = await sessionCookies(browser);
    assert.notDeepEqual(after, before);
    assert.equal(await signedIn(await browserWithCookies(before)), false, 'the old cookie is refused');
    assert.equal(await signedIn(await browserWithCookies(after)), true, 'the new one works');
  });

  test('on step-up (a second factor proven on the same session)', async () => {
    const user = await createUser(server, 'rotate-stepup');
    const browser = new Browser(CHROME_MAC);
    await signIntoAccount(browser, server, user);
    const setup = asPage(await browser.get(`${server.issuer}/account/totp/setup`));
    const authenticator = new Authenticator(setup.doc.querySelector('[data-totp-secret]')!.text.trim());
    asPage(await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
    const before = await sessionCookies(browser);
    const outcome = await authorize(app, browser, { ...user, totp: () => authenticator.nextCode() }, { acr_values: MFA });
    assert.deepEqual(outcome.pages, ['totp'], 'only the missing factor is asked');
    const after = await sessionCookies(browser);
    assert.notDeepEqual(after, before);
    assert.equal(await signedIn(await browserWithCookies(before)), false, 'the old cookie is refused');
    assert.equal(await signedIn(await browserWithCookies(after)), true);
    // The same device session, stepped up: one row, both methods, the mfa level.
    const [row] = await sessionsJson(browser);
    assert.deepEqual(row!.methods.sort(), ['password', 'totp']);
    assert.equal(row!.acr, MFA);
  });
});

describe('new-device sign-in', () => {
  test('audited and mailed for a device or address not seen before, at most once per device per day', async () => {
    const user = await createUser(server, 'newdev');
    // The first sign-in of an account sets what is known.
    await signIntoAccount(new ProxiedBrowser(CHROME_MAC, '192.0.2.10'), server, user);
    await signIntoAccount(new ProxiedBrowser(CHROME_MAC, '192.0.2.10'), server, user);
    assert.equal(auditEvents('login.new_device', user.id).length, 0, 'the first device, and the same device again, are not new');

    await signIntoAccount(new ProxiedBrowser(FIREFOX_WIN, '192.0.2.10'), server, user);
    const mail = await sink.next(user.email, /New sign-in from Firefox on Windows/);
    assert.match(mail.text, /New sign-in from Firefox on Windows \(IP 192\.0\.2\.10\)/);
    assert.match(mail.text, /Not you\?/);
    assert.ok(mail.links.includes(`${server.issuer}/account/sessions`), 'links to the devices page');
    assert.equal(auditEvents('login.new_device', user.id).length, 1);

    // Same device, new address: audited, but that device was mailed about today already.
    await signIntoAccount(new ProxiedBrowser(FIREFOX_WIN, '203.0.113.99'), server, user);
    assert.equal(auditEvents('login.new_device', user.id).length, 2);
    // Another new device is mailed.
    await signIntoAccount(new ProxiedBrowser(SAFARI_IPHONE, '203.0.113.99'), server, user);
    await sink.next(user.email, /New sign-in from Safari on iOS/);
    await sleep(1500); // MAIL_POLL_INTERVAL=1: a mail owed would have arrived
    assert.equal(sink.to(user.email).filter((m) => /New sign-in/.test(m.subject)).length, 2, 'one mail per device per day');
  });
});

describe('login history', () => {
  test('shows every attempt, success or failure, with time, IP, device, method and outcome; the last 20', async () => {
    const user = await createUser(server, 'history');
    const browser = new ProxiedBrowser(CHROME_MAC, '198.51.100.77');
    const login = asPage(await browser.get(`${server.issuer}/account/history`));
    const wrong = asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: 'not the password' }));
    assert.equal(wrong.status, 401);
    const page = asPage(await browser.submit(wrong, 'form[action$="/login"]', { email: user.email, password: user.password }));
    assert.equal(new URL(page.url).pathname, '/account/history');
    assert.match(page.html, /Succeeded/);
    assert.match(page.html, /Failed/);

    const res = await browser.request(`${server.issuer}/account/history`, { headers: { accept: 'application/json' } });
    const history = (await res.json()) as { at: string; ip: string; device: string; method: string; outcome: string }[];
    assert.deepEqual(history.map((h) => h.outcome), ['success', 'failure']);
    for (const h of history) {
      assert.equal(h.ip, '198.51.100.77');
      assert.equal(h.device, 'Chrome on macOS');
      assert.equal(h.method, 'password');
      assert.ok(Date.now() - Date.parse(h.at) < 60_000);
    }

    // An attacker elsewhere guessing: the owner sees each attempt (this browser is trusted, so unthrottled).
    const attacker = new ProxiedBrowser(FIREFOX_WIN, '203.0.113.66');
    for (let i = 0; i < 3; i++) {
      const form = asPage(await attacker.get(`${server.issuer}/account`));
      asPage(await attacker.submit(form, 'form[action$="/login"]', { email: user.email, password: `guess ${i}` }));
    }
    const seen = (await (await browser.request(`${server.issuer}/account/history`, { headers: { accept: 'application/json' } })).json()) as typeof history;
    assert.deepEqual(seen.slice(0, 3).map((h) => [h.outcome, h.ip, h.device]), Array(3).fill(['failure', '203.0.113.66', 'Firefox on Windows']));

    for (let i = 0; i < 20; i++) {
      const form = asPage(await browser.get(new URL(startUrl(), server.issuer).href));
      asPage(await browser.submit(form, 'form[action$="/login"]', { email: user.email, password: `typo ${i}` }));
    }
    const last = (await (await browser.request(`${server.issuer}/account/history`, { headers: { accept: 'application/json' } })).json()) as typeof history;
    assert.equal(last.length, 20, 'the last 20 attempts');
    assert.ok(last.every((h) => h.outcome === 'failure' && h.ip === '198.51.100.77'));
  });
});

/** A fresh authorization (a sign-in form) for a browser that is already signed in. */
function startUrl(): string {
  return oidc.buildAuthorizationUrl(app, { redirect_uri: REDIRECT, scope: 'openid', prompt: 'login', code_challenge: 'x'.repeat(43), code_challenge_method: 'S256', state: 's' }).href;
}

describe('password change', () => {
  test('the current password is required; the policy refuses a common password and one with the email, saying why', async () => {
    const user = await createUser(server, 'pwchange');
    const browser = new Browser(CHROME_MAC);
    const form = await signIntoAccount(browser, server, user, '/account/password');
    assert.equal(new URL(form.url).pathname, '/account/password');
    assert.ok(form.doc.querySelector('input[name=current_password]'));

    const wrong = asPage(await browser.submit(form, 'form[action="/account/password"]', { current_password: 'nope nope nope', new_password: 'a perfectly fine new one' }));
    assert.equal(wrong.status, 401);
    assert.match(wrong.html, /That is not your current password/);
    const common = asPage(await browser.submit(form, 'form[action="/account/password"]', { current_password: user.password, new_password: 'password123' }));
    assert.equal(common.status, 400);
    assert.match(common.html, /This password is in a list of commonly used passwords/);
    const own = asPage(await browser.submit(form, 'form[action="/account/password"]', { current_password: user.password, new_password: `my ${user.email} secret` }));
    assert.equal(own.status, 400);
    assert.match(own.html, /contains your email address/);
    const short = asPage(await browser.submit(form, 'form[action="/account/password"]', { current_password: user.password, new_password: 'short' }));
    assert.equal(short.status, 400);
    assert.match(short.html, /at least 8 characters/);
    // Without the form's token.
    const forged = await browser.request(`${server.issuer}/account/password`, { method: 'POST', body: new URLSearchParams({ current_password: user.password, new_password: 'a perfectly fine new one' }) });
    assert.equal(forged.status, 403);
  });

  test('a change rotates this session\'s id, signs every other device out with its refresh tokens, keeps this device\'s, and mails the user', async () => {
    const user = await createUser(server, 'pwrotate');
    const here = new Browser(CHROME_MAC);
    const there = new Browser(FIREFOX_WIN);
    const hereTokens = await rpSignIn(here, user);
    const thereTokens = await rpSignIn(there, user);
    const form = asPage(await here.get(`${server.issuer}/account/password`));
    const before = await sessionCookies(here);

    const done = asPage(await here.submit(form, 'form[action="/account/password"]', { current_password: user.password, new_password: 'a brand new passphrase' }));
    assert.equal(new URL(done.url).pathname, '/account/password');
    assert.match(done.html, /Your password was changed/);

    assert.notDeepEqual(await sessionCookies(here), before);
    assert.equal(await signedIn(await browserWithCookies(before)), false, 'the cookie from before the change is refused');
    assert.equal(await signedIn(here), true, 'this device stays signed in');
    assert.equal(await signedIn(there), false, 'the other device is signed out');
    await assert.rejects(oidc.refreshTokenGrant(app, thereTokens.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    assert.equal(await active(thereTokens.access_token), false);
    assert.equal(await active(hereTokens.access_token), true, 'tokens issued under this session are kept');

    const mail = await sink.next(user.email, /Your password was changed/);
    assert.match(mail.text, /Every other device was signed out/);
    assert.match(mail.text, /Chrome on macOS/);
    // Old password refused, new one accepted.
    const old = asPage(await signIntoAccount(new Browser(), server, user));
    assert.equal(old.status, 401);
    assert.equal(await signedIn(await (async () => {
      const b = new Browser();
      await signIntoAccount(b, server, { ...user, password: 'a brand new passphrase' });
      return b;
    })()), true);
  });

  test('a recent second factor stands in for the current password', async () => {
    const user = await createUser(server, 'pwfactor');
    const browser = new Browser(CHROME_MAC);
    await signIntoAccount(browser, server, user);
    const setup = asPage(await browser.get(`${server.issuer}/account/totp/setup`));
    const authenticator = new Authenticator(setup.doc.querySelector('[data-totp-secret]')!.text.trim());
    asPage(await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
    let form = asPage(await browser.get(`${server.issuer}/account/password`));
    assert.ok(form.doc.querySelector('input[name=current_password]'), 'password only proven so far');
    // Prove the authenticator app on this session (re-authentication page), then change.
    const reauth = asPage(await browser.get(`${server.issuer}/account/reauth?return_to=/account/password`));
    const codeForm = reauth.doc.querySelectorAll('form[action="/account/reauth"]').find((f) => f.querySelector('input[name=code]'))!;
    codeForm.setAttribute('id', 'code-form');
    form = asPage(await browser.submit(reauth, '#code-form', { code: await authenticator.nextCode() }));
    assert.equal(new URL(form.url).pathname, '/account/password');
    assert.equal(form.doc.querySelector('input[name=current_password]'), null, 'no current password asked');
    const done = asPage(await browser.submit(form, 'form[action="/account/password"]', { new_password: 'changed with a code' }));
    assert.match(done.html, /Your password was changed/);
  });

  test('each attempt is paid for first: 10 an hour per user, requests in flight at once included', { skip: POSTGRES ? false : NEEDS_POSTGRES }, async () => {
    const user = await createUser(server, 'pwbudget');
    const browser = new Browser(CHROME_MAC);
    const form = await signIntoAccount(browser, server, user, '/account/password');
    const token = form.doc.querySelector('input[name=_csrf]')!.getAttribute('value')!;
    // Each is refused (no current password) only after its point was spent.
    const body = () => new URLSearchParams({ _csrf: token, new_password: 'password1' });
    const statuses = await Promise.all(Array.from({ length: 16 }, () => browser.request(`${server.issuer}/account/password`, { method: 'POST', body: body() }).then((r) => r.status)));
    assert.equal(statuses.filter((s) => s === 400).length, 10, `statuses: ${statuses.join(',')}`);
    assert.equal(statuses.filter((s) => s === 429).length, 6);
  });
});

describe('"Keep me signed in"', () => {
  test('the sign-in page keeps every label and adds the box; ticked gives a persistent cookie, unticked a browser-session one', async () => {
    const user = await createUser(server, 'remember');
    const browser = new Browser(CHROME_MAC);
    const login = asPage(await browser.get(`${server.issuer}/account`));
    const labels = login.doc.querySelectorAll('label').map((l) => l.text.trim());
    for (const label of ['Email', 'Password', 'Keep me signed in on this device']) assert.ok(labels.includes(label), `label ${label} in ${labels.join(' | ')}`);
    for (const text of ['Forgot password?', 'Sign in', 'Email me a sign-in link', 'Sign in with a passkey', 'Sign in with SSO', 'Create an account', 'Cancel']) assert.ok(login.html.includes(text), text);

    await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password, remember: 'yes' });
    const remembered = (await browser.jar.getCookies(server.issuer)).find((c) => c.key === 'lk.session')!;
    assert.ok(remembered.expires instanceof Date && remembered.expires.getTime() - Date.now() > 13 * 86400_000, 'persistent for the remember-me idle time');

    const other = new Browser(CHROME_MAC);
    await signIntoAccount(other, server, user);
    const plain = (await other.jar.getCookies(server.issuer)).find((c) => c.key === 'lk.session')!;
    assert.equal(plain.expires, 'Infinity', 'a browser-session cookie');
  });
});

describe('timeouts (real clock, short TTLs)', () => {
  let short: TestServer;
  let shortApp: oidc.Configuration;
  const IDLE = 5;
  const MAX = 20;

  before(async () => {
    short = await startServer({ SESSION_IDLE_TTL: String(IDLE), SESSION_REMEMBER_TTL: '60', SESSION_MAX_TTL: String(MAX) });
    const created = (await short.cli(['clients', 'create', '--id', 'app', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
    shortApp = await oidc.discovery(new URL(short.issuer), 'app', created.client_secret, undefined, insecure);
  });
  after(async () => short?.stop());

  async function silent(browser: Browser) {
    return hasSession(browser, shortApp);
  }

  test('idle: each use slides the window; SESSION_IDLE_TTL unused ends it, on the RP and the account pages', async () => {
    const user = await createUser(short, 'idle');
    const browser = new Browser(CHROME_MAC);
    await signIntoAccount(browser, short, user);
    await sleep(3000);
    assert.equal(await silent(browser), true);
    await sleep(3000);
    assert.equal(await silent(browser), true, `used ${IDLE - 2} s ago: alive, ${IDLE + 1} s after the sign-in`);
    await sleep((IDLE + 1) * 1000);
    assert.equal(await silent(browser), false, 'unused for longer than the idle timeout (and well before SESSION_MAX_TTL)');
    assert.equal(await signedIn(browser, short), false);
  });

  test('absolute: a remembered session used all the time still ends SESSION_MAX_TTL after the sign-in', async () => {
    const user = await createUser(short, 'max');
    const browser = new Browser(CHROME_MAC);
    await signIntoAccount(browser, short, user, '/account', true);
    const start = Date.now();
    // Each gap is longer than the short idle timeout: remembered sessions idle for SESSION_REMEMBER_TTL.
    for (let i = 0; i < 3; i++) {
      await sleep((IDLE + 1) * 1000);
      assert.equal(await silent(browser), true, `use ${i + 1}`);
    }
    await sleep(Math.max(0, MAX * 1000 - (Date.now() - start)) + 1500);
    assert.equal(await silent(browser), false, 'past the absolute timeout, used a few seconds ago');
    assert.equal(await signedIn(browser, short), false);
  });
});

