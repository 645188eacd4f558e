// Input hardening and operations: client IPs behind proxies, NUL bytes and malformed JSON, a fuzz
// over every route of ours (no 5xx, no stack traces), the /metrics token, private embedded
// data, and production refusing to print mail to the log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as oidc from 'openid-client';
import pg from 'pg';
import { Browser, asPage, type Page } from '../helpers/browser.ts';
import { freePort, startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, insecure, startAuthorization } from '../helpers/rp.ts';
import { Authenticator } from '../helpers/totp.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'src/main.ts');
const POSTGRES = Boolean(process.env.DATABASE_URL);
const MFA = 'urn:latchkey:acr:mfa';
const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
// Text that only a stack trace or a leaked internal error puts in a response.
const STACK_TRACE = /\n\s+at \S|\bat (async )?\S+ \(|\.[cm]?[jt]s:\d+:\d+|node:internal|node_modules\/|TypeError|RangeError|ReferenceError|SyntaxError: Unexpected|invalid byte sequence/;

const csrfOf = (page: Page) => page.doc.querySelector('input[name=_csrf]')?.getAttribute('value') ?? page.doc.querySelector('[data-csrf]')?.getAttribute('data-csrf') ?? '';
const uidOf = (page: Page) => /\/interaction\/([^/?#]+)/.exec(page.url)?.[1] ?? '';

/** The secret of the last client createRp made (the fuzz authenticates as it). */
let rpSecret = '';

async function createRp(target: TestServer): Promise<oidc.Configuration> {
  const created = (await target.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT, '--grant-type', 'authorization_code', '--grant-type', 'refresh_token'])) as { client_secret: string };
  rpSecret = created.client_secret;
  return oidc.discovery(new URL(target.issuer), 'rp', created.client_secret, undefined, insecure);
}

/** Every request of this browser arrives through a proxy that appended `proxied` to what the client sent. */
class ProxiedBrowser extends Browser {
  private readonly forwardedFor: string;
  constructor(forwardedFor: string) {
    super();
    this.forwardedFor = forwardedFor;
  }
  override request(url: string, init: Parameters<Browser['request']>[1] = {}) {
    return super.request(url, { ...init, headers: { ...init.headers, 'x-forwarded-for': this.forwardedFor } });
  }
}

describe('client IP behind a proxy (TRUST_PROXY_HOPS)', () => {
  let server: TestServer;
  let rp: oidc.Configuration;
  const PROXY_SEEN = '203.0.113.7'; // the address our proxy appended: the real client
  const spoofed = (i: number) => `198.51.100.${i + 1}`;

  before(async () => {
    server = await startServer({ TRUST_PROXY: 'true', LOGIN_RATE_LIMIT_PER_IP: '3', LOGIN_RATE_LIMIT_PER_ACCOUNT: '100', METRICS_TOKEN });
    rp = await createRp(server);
  });
  after(async () => server?.stop());

  test('a client rotating the left-most X-Forwarded-For is still held to one per-IP budget, and audited by the real address', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6 && statuses.at(-1) !== 429; i++) {
      // A new browser, a new account and a new left-most address each time; the proxy's entry stays.
      const browser = new ProxiedBrowser(`${spoofed(i)}, ${PROXY_SEEN}`);
      const { step } = await startAuthorization(browser, rp);
      const page = asPage(step);
      statuses.push(asPage(await browser.submit(page, 'form[action$="/login"]', { email: `target${i}@example.com`, password: 'guess' })).status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 429], 'the budget of 3 per IP is spent, whatever the client wrote into X-Forwarded-For');

    if (!POSTGRES) return; // the audit rows are read from PostgreSQL below
    const db = new pg.Client({ connectionString: server.env.DATABASE_URL });
    await db.connect();
    try {
      const { rows } = await db.query<{ type: string; ip: string }>("SELECT type, ip FROM audit_events WHERE type IN ('login.failure', 'login.throttled') ORDER BY id");
      assert.equal(rows.filter((r) => r.type === 'login.failure').length, 3);
      assert.equal(rows.filter((r) => r.type === 'login.throttled').length, 1);
      for (const row of rows) assert.equal(row.ip, PROXY_SEEN, `${row.type} records the address the proxy saw, not the client's claim`);
    } finally {
      await db.end();
    }
  });

  test('/metrics with METRICS_TOKEN set needs the bearer token', async () => {
    const none = await fetch(`${server.url}/metrics`);
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer realm="metrics"$/);
    assert.doesNotMatch(await none.text(), /latchkey_http_requests_total/);

    const wrong = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}x` } });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    const basic = await fetch(`${server.url}/metrics`, { headers: { authorization: `Basic ${Buffer.from(`x:${METRICS_TOKEN}`).toString('base64')}` } });
    assert.equal(basic.status, 401);

    const ok = await fetch(`${server.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /latchkey_http_requests_total/);
  });
});

// ---------------------------------------------------------------------------------------------
// NUL bytes, malformed JSON and the fuzz share one server with budgets out of the way, so the
// fuzz reaches the handlers instead of stopping at a 429.

let server: TestServer;
let rp: oidc.Configuration;
const ALICE = { email: 'alice@example.com', password: 'amber falcon 123' }; // password only
const BOB = { email: 'bob@example.com', password: 'bob password 12345' }; // password + TOTP
const CAROL = { email: 'carol@example.com', password: 'tulip meadow 123' }; // signed in to /account
let carol: Browser;
let carolCsrf = '';

const HIGH = '1000000';

// ---------------------------------------------------------------------------------------------
// The fuzz. Routes are read from the routers' source, so a new route is fuzzed without editing
// this file; a route whose path is built at run time must be listed in EXPANSIONS.

interface Route {
  method: 'GET' | 'POST';
  path: string;
}

const EXPANSIONS: Record<string, string[]> = {
  '/interaction/:uid/factor/${path}': ['totp', 'recovery'],
};

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

function collectRoutes(): Route[] {
  const found = new Map<string, Route>();
  for (const file of [...sourceFiles(path.join(ROOT, 'src/flows')), path.join(ROOT, 'src/app.ts')]) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\b(?:router|ops|pages)\.(get|post)\(\s*(['`])([^'`]+)\2/g)) {
      const method = m[1]!.toUpperCase() as Route['method'];
      const template = m[3]!;
      let paths = [template];
      if (template.includes('${')) {
        const values = EXPANSIONS[template];
        assert.ok(values, `${path.relative(ROOT, file)}: the route ${template} is built at run time: list its values in EXPANSIONS`);
        paths = values.map((v) => template.replace(/\$\{[^}]+\}/, v));
      }
      for (const p of paths) found.set(`${method} ${p}`, { method, path: p });
    }
  }
  // oidc-provider's endpoints and the pages it renders (they end in our interaction routes).
  for (const p of ['/auth', '/me', '/jwks', '/.well-known/openid-configuration', '/session/end']) found.set(`GET ${p}`, { method: 'GET', path: p });
  for (const p of ['/auth', '/token', '/me', '/token/introspection', '/session/end', '/session/end/confirm']) found.set(`POST ${p}`, { method: 'POST', path: p });
  return [...found.values()];
}

/** Field names our forms and JSON endpoints read (bodies and query strings). */
const FIELDS = ['email', 'password', 'code', 'name', 'token', 'uid', 'return_to', 'notice', 'state', 'error', 'response', 'id', 'rawId', 'type', 'logout', 'consent', 'client_id', 'redirect_uri', 'scope', 'grant_type', 'refresh_token', 'response_type', 'xsrf'];
const LONG = 'x'.repeat(60_000);
/** Authorization and logout parameters the provider stores or looks up. */
const PROVIDER_PARAMS = ['nonce', 'login_hint', 'acr_values', 'ui_locales', 'claims', 'id_token_hint', 'max_age', 'prompt', 'code_challenge', 'post_logout_redirect_uri', 'response_mode', 'request', 'request_uri', 'claims_locales', 'resource', 'logout_hint'];

interface Variant {
  label: string;
  query?: string;
  body?: string;
  contentType?: string;
  json?: boolean;
  /** Send the browser's CSRF token (form field and header). */
  csrf: boolean;
  /** Swap the route's path parameters for this (raw, already encoded) value. */
  param?: string;
  authorization?: string;
}

const form = (fields: Record<string, string>) => Object.entries(fields).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
const plausible = (): Record<string, string> => ({ email: 'nobody@example.com', password: 'some password 1', code: '123456', name: 'Key', token: 'abc', return_to: '/account', consent: 'yes' });

function variants(route: Route): Variant[] {
  const out: Variant[] = [];
  const q = (label: string, query: string) => out.push({ label: `query ${label}`, query, csrf: true });
  // Query strings, for every method.
  q('NUL in every field', FIELDS.map((f) => `${f}=a%00b`).join('&'));
  q('arrays', FIELDS.map((f) => `${f}=a&${f}=b`).join('&'));
  q('objects', FIELDS.map((f) => `${f}[a]=b`).join('&'));
  q('long', `token=${LONG.slice(0, 6000)}&email=${LONG.slice(0, 6000)}`);
  q('bad percent-encoding', 'token=%E0%A4%A&email=%&return_to=%ZZ');
  // The provider's GET endpoints: one hostile parameter at a time, the rest of the request valid.
  if (route.method === 'GET' && !route.path.startsWith('/interaction') && !route.path.startsWith('/account')) {
    for (const field of [...FIELDS, ...PROVIDER_PARAMS]) q(`NUL in ${field}`, `${field}=a%00b`);
    for (const field of PROVIDER_PARAMS) q(`long ${field}`, `${field}=${LONG.slice(0, 4000)}`);
  }
  // The provider's POST endpoints with the right client: the other fields reach the lookups.
  if (route.method === 'POST' && route.path.startsWith('/token')) {
    const basic = `Basic ${Buffer.from(`rp:${rpSecret}`).toString('base64')}`;
    const grants = ['authorization_code', 'refresh_token', 'client_credentials', 'a\0b'];
    for (const field of ['code', 'refresh_token', 'token', 'redirect_uri', 'code_verifier', 'scope', 'token_type_hint', 'resource']) {
      for (const grant of grants.slice(0, field === 'code' ? 4 : 2)) {
        out.push({ label: `valid client, ${grant} grant, NUL in ${field}`, body: form({ grant_type: grant, code: 'abc', refresh_token: 'abc', token: 'abc', redirect_uri: REDIRECT, code_verifier: 'v'.repeat(43), [field]: 'a\0b' }), contentType: 'application/x-www-form-urlencoded', csrf: false, authorization: basic });
      }
    }
  }
  if (route.method === 'POST' && route.path === '/auth') {
    for (const field of ['state', 'nonce', 'login_hint', 'client_id']) {
      out.push({ label: `valid authorization, NUL in ${field}`, body: form({ ...AUTH_QUERY, [field]: 'a\0b' }), contentType: 'application/x-www-form-urlencoded', csrf: false });
    }
  }
  // Client credentials and bearer tokens the provider looks up.
  out.push({ label: 'Basic auth with a NUL in the client id', authorization: `Basic ${Buffer.from('rp\0x:secret').toString('base64')}`, csrf: true });
  out.push({ label: 'Basic auth, not base64', authorization: 'Basic %%%', csrf: true });
  out.push({ label: 'Bearer token of many kinds', authorization: `Bearer ${'A'.repeat(5000)}`, csrf: true });
  if (route.path.includes('/:')) {
    out.push({ label: 'NUL in the path parameter', param: 'a%00b', csrf: true });
    out.push({ label: 'long path parameter', param: 'x'.repeat(3000), csrf: true });
  }
  if (route.method === 'GET') return out;

  for (const csrf of [true, false]) {
    const tag = csrf ? 'with CSRF' : 'without CSRF';
    const f = (label: string, body: string, contentType = 'application/x-www-form-urlencoded') => out.push({ label: `form ${label} ${tag}`, body, contentType, csrf });
    const j = (label: string, body: string, contentType = 'application/json') => out.push({ label: `json ${label} ${tag}`, body, contentType, json: true, csrf });
    f('NUL in every field', form(Object.fromEntries(FIELDS.map((k) => [k, 'a\0b']))));
    j('NUL in every field', JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, 'a\0b']))));
    j('{}', '{}');
    j('[]', '[]');
    j('null', 'null');
    j('bad JSON', '{"email": ');
    f('bad JSON as a form', '{"email": "a"}', 'application/json');
    if (!csrf) continue; // without a token every body stops at the CSRF check: the cases above cover it
    for (const field of FIELDS) f(`NUL in ${field}`, form({ ...plausible(), [field]: 'a\0b' }));
    f('raw NUL byte', `email=a\0b&password=a\0b&code=\0`);
    f('empty', '');
    f('arrays', FIELDS.map((k) => `${k}[]=a&${k}[]=b`).join('&'));
    f('objects', FIELDS.map((k) => `${k}[a][b]=c`).join('&'));
    f('long strings', form(Object.fromEntries(FIELDS.slice(0, 3).map((k) => [k, LONG.slice(0, 20_000)]))));
    f('too large', form({ email: 'x'.repeat(100_000) }));
    j('"a string"', '"a string"');
    j('a number', '42');
    j('numbers for strings', JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, 42]))));
    j('arrays for strings', JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, ['a', 'b']]))));
    j('objects for strings', JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, { a: 'b' }]))));
    j('nulls', JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, null]))));
    j('booleans', JSON.stringify(Object.fromEntries(FIELDS.map((k) => [k, true]))));
    j('long strings', JSON.stringify(Object.fromEntries(FIELDS.slice(0, 3).map((k) => [k, LONG.slice(0, 20_000)]))));
    j('deeply nested', `${'['.repeat(20_000)}${']'.repeat(20_000)}`);
    j('passkey-shaped, wrong inside', JSON.stringify({ id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: { clientDataJSON: 'AAAA', authenticatorData: 'AAAA', signature: 'AAAA', attestationObject: 'AAAA' }, clientExtensionResults: {} }));
    j('registration-shaped, wrong inside', JSON.stringify({ name: 'k', response: { id: 'AAAA', rawId: 'AAAA', type: 'public-key', response: { clientDataJSON: 'AAAA', attestationObject: 'AAAA' }, clientExtensionResults: {} } }));
    j('__proto__', '{"__proto__": {"email": "x"}, "constructor": {"prototype": {"a": 1}}}');
    j('unsupported charset', '{}', 'application/json; charset=latin1');
    f('text/plain', 'email=a&password=b', 'text/plain');
    f('xml', '<?xml version="1.0"?><a>b</a>', 'application/xml');
    f('multipart', '--x\r\nContent-Disposition: form-data; name="email"\r\n\r\na\0b\r\n--x--\r\n', 'multipart/form-data; boundary=x');
    f('no content type', 'email=a%00b', '');
  }
  return out;
}

type State = 'anonymous' | 'enrolling' | 'second factor' | 'signed in';
const STATES: State[] = ['anonymous', 'enrolling', 'second factor', 'signed in'];

/** A browser in `state` with a live interaction (its uid) and the browser's CSRF token. */
async function prepare(state: State): Promise<{ browser: Browser; uid: string; csrf: string }> {
  const browser = new Browser();
  if (state === 'signed in') {
    browser.jar = await carol.jar.clone();
    const page = asPage((await startAuthorization(browser, rp, { prompt: 'login' })).step);
    return { browser, uid: uidOf(page), csrf: csrfOf(page) };
  }
  const user = state === 'enrolling' ? ALICE : BOB;
  const login = asPage((await startAuthorization(browser, rp, state === 'anonymous' ? {} : { acr_values: MFA })).step);
  if (state === 'anonymous') return { browser, uid: uidOf(login), csrf: csrfOf(login) };
  const next = asPage(await browser.submit(login, 'form[action$="/login"]', user));
  assert.match(next.url, state === 'enrolling' ? /\/enroll$/ : /\/factor$/, `${state}: the sign-in waits at the second step (${next.url})`);
  return { browser, uid: uidOf(next), csrf: csrfOf(next) };
}

// A valid authorization request, so a hostile parameter gets past the client and redirect checks.
const AUTH_QUERY = { client_id: 'rp', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT, code_challenge: 'a'.repeat(43), code_challenge_method: 'S256' };

function buildUrl(route: Route, uid: string, variant: Variant): string {
  const p = route.path.replace(/:uid\b/g, variant.param ?? uid).replace(/:([a-z]+)\b/gi, variant.param ?? 'x');
  let query = variant.query ?? '';
  if (route.path === '/auth') {
    // Raw concatenation: the variant's own encoding (even a broken one) reaches the server as is.
    const overridden = new Set(query.split('&').map((kv) => kv.split(/[=[]/)[0]));
    const base = Object.entries(AUTH_QUERY).filter(([k]) => !overridden.has(k));
    query = [form(Object.fromEntries(base)), query].filter(Boolean).join('&');
  }
  return `${server.url}${p}${query ? `?${query}` : ''}`;
}

interface Finding {
  route: string;
  state: State;
  variant: string;
  status: number;
  excerpt: string;
}

async function fuzzRoute(route: Route, state: State, findings: Finding[]): Promise<number> {
  let { browser, uid, csrf } = await prepare(state);
  let sent = 0;
  for (const variant of variants(route)) {
    const headers: Record<string, string> = { accept: variant.json ? 'application/json' : 'text/html' };
    if (variant.contentType) headers['content-type'] = variant.contentType;
    if (variant.csrf) headers['x-csrf-token'] = csrf;
    let body = variant.body;
    if (body !== undefined && variant.csrf && !variant.json && variant.contentType === 'application/x-www-form-urlencoded') body = body ? `_csrf=${encodeURIComponent(csrf)}&${body}` : `_csrf=${encodeURIComponent(csrf)}`;
    if (variant.authorization) headers.authorization = variant.authorization;
    else if (route.path === '/me') headers.authorization = 'Bearer not-a-token';
    const res = await browser.request(buildUrl(route, uid, variant), { method: route.method, body: route.method === 'POST' ? (body ?? '') : undefined, headers });
    const text = await res.text();
    sent++;
    if (res.status >= 500 || STACK_TRACE.test(text)) {
      findings.push({ route: `${route.method} ${route.path}`, state, variant: variant.label, status: res.status, excerpt: text.replace(/\s+/g, ' ').slice(0, 160) });
    }
    // Finishing or cancelling the interaction (abort, consent…) leaves later variants nothing to
    // hit: start a new one.
    if (res.status === 303 && route.path.startsWith('/interaction/')) ({ browser, uid, csrf } = await prepare(state));
  }
  return sent;
}

describe('hostile input (one server, budgets out of the way)', () => {
  before(async () => {
    server = await startServer({
      LOGIN_RATE_LIMIT_PER_IP: HIGH,
      LOGIN_RATE_LIMIT_PER_ACCOUNT: HIGH,
      FACTOR_RATE_LIMIT_PER_ATTEMPT: HIGH,
      FACTOR_RATE_LIMIT_PER_USER: HIGH,
      REAUTH_MAX_FAILURES: HIGH,
      SIGNUP_RATE_LIMIT_PER_IP: HIGH,
      MAIL_RATE_LIMIT_PER_IP: HIGH,
      MAIL_RATE_LIMIT_PER_ADDRESS: HIGH,
      LOG_LEVEL: 'warn',
    });
    rp = await createRp(server);
    for (const user of [ALICE, BOB, CAROL]) await server.cli(['users', 'create', '--email', user.email, '--password', user.password, '--verified']);

    // Bob enrols an authenticator from his account page, so his sign-ins stop at the code step.
    const bob = new Browser();
    await bob.submit(asPage(await bob.get(`${server.issuer}/account`)), 'form[action$="/login"]', BOB);
    const setup = asPage(await bob.get(`${server.issuer}/account/totp/setup`));
    const authenticator = new Authenticator(setup.doc.querySelector('[data-totp-secret]')!.text.trim());
    const codes = asPage(await bob.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
    assert.equal(codes.status, 200);

    carol = new Browser();
    const account = asPage(await carol.submit(asPage(await carol.get(`${server.issuer}/account`)), 'form[action$="/login"]', CAROL));
    assert.equal(new URL(account.url).pathname, '/account');
    carolCsrf = csrfOf(account);
    assert.ok(carolCsrf, 'the account page carries a CSRF token');
  });
  after(async () => server?.stop());

  test('/metrics without METRICS_TOKEN is open, as before', async () => {
    const res = await fetch(`${server.url}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /latchkey_http_requests_total/);
  });

  describe('NUL bytes and malformed JSON bodies', () => {
    test('a NUL in the sign-in email is refused with a page, not a database error', async () => {
      const browser = new Browser();
      const login = asPage((await startAuthorization(browser, rp)).step);
      const res = await browser.request(new URL(`/interaction/${uidOf(login)}/login`, server.url).href, {
        method: 'POST',
        body: `_csrf=${encodeURIComponent(csrfOf(login))}&email=a%00%40b.c&password=whatever`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      const html = await res.text();
      assert.equal(res.status, 400);
      assert.match(res.headers.get('content-type') ?? '', /text\/html/);
      assert.match(html, /NUL character/);
      assert.doesNotMatch(html, STACK_TRACE);
    });

    test('a NUL in a JSON body or in the query string of our routes is refused', async () => {
      const json = await carol.request(`${server.url}/account/reauth/passkey/verify`, {
        method: 'POST',
        body: JSON.stringify({ id: 'a\u0000b' }),
        headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': carolCsrf },
      });
      assert.equal(json.status, 400);
      assert.equal(((await json.json()) as { error: string }).error, 'invalid_request');
      const query = await new Browser().request(`${server.url}/forgot-password?email=a%00b`);
      assert.equal(query.status, 400);
      assert.match(await query.text(), /NUL character/);
    });

    for (const body of ['{}', '[]', '{"id":"abc"}', '{"id":1,"response":"x"}', '{"id":"abc","rawId":"abc","type":"public-key","response":{}}']) {
      test(`${body} as the passkey re-authentication answers 400 with a JSON error`, async () => {
        const res = await carol.request(`${server.url}/account/reauth/passkey/verify`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': carolCsrf },
        });
        const text = await res.text();
        assert.equal(res.status, 400, text);
        const parsed = JSON.parse(text) as { error: string; error_description: string };
        assert.equal(parsed.error, 'invalid_request');
        assert.match(parsed.error_description, /not valid/);
      });
    }

    test('{} and [] as a new passkey on the account page answer 400 with a JSON error', async () => {
      for (const body of ['{}', '[]', '{"response":{}}', '{"response":[],"name":5}']) {
        const res = await carol.request(`${server.url}/account/passkeys`, {
          method: 'POST',
          body,
          headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': carolCsrf },
        });
        assert.equal(res.status, 400, `${body}: ${res.status}`);
        assert.equal(((await res.json()) as { error: string }).error, 'invalid_request', body);
      }
    });
  });

  describe('fuzz: every route, hostile input, four browser states', () => {
    test('no 5xx and no stack trace in any answer', { timeout: 15 * 60_000 }, async () => {
      const routes = collectRoutes();
      const names = routes.map((r) => `${r.method} ${r.path}`);
      // The scan must not silently find nothing: a few routes that exist in every build.
      for (const known of ['POST /interaction/:uid/login', 'GET /account', 'POST /account/reauth/passkey/verify', 'GET /interaction/:uid/factor', 'POST /interaction/:uid/factor/totp', 'GET /metrics', 'POST /token']) {
        assert.ok(names.includes(known), `route scan found ${known}`);
      }
      assert.ok(routes.length >= 50, `found ${routes.length} routes`);

      // FUZZ_ONLY=<regex> narrows the run to matching routes while investigating a finding.
    const only = process.env.FUZZ_ONLY ? new RegExp(process.env.FUZZ_ONLY) : undefined;
    const tasks = routes.filter((r) => !only || only.test(`${r.method} ${r.path}`)).flatMap((route) => STATES.map((state) => ({ route, state })));
      const findings: Finding[] = [];
      let sent = 0;
      let next = 0;
      // Four browsers at work at a time: the server is one process on a shared machine.
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < tasks.length) {
            const task = tasks[next++]!;
            sent += await fuzzRoute(task.route, task.state, findings);
          }
        }),
      );
      const byRoute = new Map<string, Finding[]>();
      for (const f of findings) byRoute.set(f.route, [...(byRoute.get(f.route) ?? []), f]);
      const report = [...byRoute].map(([route, fs]) => `${route}: ${fs.length}× e.g. [${fs[0]!.state}] ${fs[0]!.variant} → ${fs[0]!.status} ${fs[0]!.excerpt}\n    variants: ${[...new Set(fs.map((f) => f.variant))].slice(0, 12).join(' | ')}`).join('\n  ');
      assert.equal(findings.length, 0, `${findings.length} of ${sent} requests answered 5xx or showed a stack trace:\n  ${report}`);
      if (!only) assert.ok(sent > 2500, `sent ${sent} requests`);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Start-up behaviour, with the real entry point on embedded storage.

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  url: string;
}

async function startMain(env: Record<string, string>): Promise<Started> {
  const port = await freePort();
  const url = `http://localhost:${port}`;
  const chunks: string[] = [];
  const child = spawn(process.execPath, [MAIN, 'serve'], {
    // Empty means unset: nothing inherited from the test run decides what is being tested.
    env: { ...process.env, DATABASE_URL: '', SMTP_URL: '', MAIL_TRANSPORT: '', LOG_LEVEL: 'warn', PORT: String(port), ISSUER: url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => chunks.push(String(d)));
  child.stderr!.on('data', (d) => chunks.push(String(d)));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => chunks.join(''), exited, url };
}

/** Resolves true once /readyz answers, false if the process exits first. */
async function ready(started: Started): Promise<boolean> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (started.child.exitCode !== null) return false;
    try {
      if ((await fetch(`${started.url}/readyz`)).ok) return true;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no answer and no exit within 30 s:\n${started.output()}`);
}

async function stop(started: Started) {
  if (started.child.exitCode === null && started.child.signalCode === null) started.child.kill('SIGTERM');
  await started.exited;
}

describe('start-up', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-hardening-'));
    dirs.push(dir);
    return dir;
  };
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);

  test('the embedded data directory is private (0700), and an existing world-readable one is narrowed', async () => {
    const dataDir = path.join(tempDir(), 'data');
    const env = { DATA_DIR: dataDir, NODE_ENV: 'test' };
    let started = await startMain(env);
    try {
      assert.ok(await ready(started), started.output());
      assert.equal(mode(dataDir), '700', 'DATA_DIR');
      assert.equal(mode(path.join(dataDir, 'pglite')), '700', 'DATA_DIR/pglite');
    } finally {
      await stop(started);
    }
    // As an older version left it.
    fs.chmodSync(path.join(dataDir, 'pglite'), 0o755);
    started = await startMain(env);
    try {
      assert.ok(await ready(started), started.output());
      assert.equal(mode(path.join(dataDir, 'pglite')), '700', 'DATA_DIR/pglite after a restart');
    } finally {
      await stop(started);
    }
  });

  const PRODUCTION = { NODE_ENV: 'production', LATCHKEY_SECRET: 'production-secret-0123456789abcdefghijklmnop' };

  test('production without SMTP_URL refuses to start, naming SMTP_URL', async () => {
    const started = await startMain({ ...PRODUCTION, DATA_DIR: tempDir() });
    const up = await ready(started).catch(() => true);
    await stop(started);
    assert.equal(up, false, `the server must not come up:\n${started.output()}`);
    assert.notEqual(await started.exited, 0);
    assert.match(started.output(), /SMTP_URL/);
  });

  test('production with MAIL_TRANSPORT=log starts (mail printed to the log on purpose)', async () => {
    const started = await startMain({ ...PRODUCTION, MAIL_TRANSPORT: 'log', DATA_DIR: tempDir() });
    try {
      assert.ok(await ready(started), started.output());
    } finally {
      await stop(started);
    }
  });
});
