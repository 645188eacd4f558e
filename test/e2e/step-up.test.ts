// Step-up through the real hosted pages with an openid-client RP: the session × request
// matrix, inline enrolment, the deny policy, and attacks on second factors.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Authenticator } from '../helpers/totp.ts';
import { REDIRECT, authorize, insecure, type Credentials, type PageKind } from '../helpers/rp.ts';

const PWD = 'urn:latchkey:acr:pwd';
const MFA = 'urn:latchkey:acr:mfa';
const PHR = 'urn:latchkey:acr:phr';
const STEP_UP_TTL = 10;

let server: TestServer;
let rp: oidc.Configuration;
let userCounter = 0;

interface TotpUser extends Credentials {
  authenticator: Authenticator;
  /** A browser whose session proved only the password (it enrolled TOTP afterwards). */
  pwdBrowser: Browser;
  recoveryCodes: string[];
}

async function createUser(prefix: string): Promise<Credentials> {
  const email = `${prefix}${++userCounter}@example.com`;
  // Unique, and built from nothing the password policy refuses (the address, the name, the product).
  const password = `violet teapot orbit ${userCounter}`;
  await server.cli(['users', 'create', '--email', email, '--password', password, '--verified']);
  return { email, password };
}

/** A user who signed in with a password, then enrolled TOTP from the account page. */
async function createTotpUser(prefix = 'totp'): Promise<TotpUser> {
  const creds = await createUser(prefix);
  const browser = new Browser();
  const login = asPage(await browser.get(`${server.issuer}/account`));
  await browser.submit(login, 'form[action$="/login"]', { email: creds.email, password: creds.password });
  const setup = asPage(await browser.get(`${server.issuer}/account/totp/setup`));
  const secret = setup.doc.querySelector('[data-totp-secret]')!.text.trim();
  assert.match(setup.doc.querySelector('.qr img')!.getAttribute('src')!, /^data:image\/png;base64,/);
  const authenticator = new Authenticator(secret);
  const codesPage = asPage(await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
  const recoveryCodes = codesPage.doc.querySelectorAll('.recovery-codes code').map((c) => c.text.trim());
  assert.equal(recoveryCodes.length, 10, 'ten recovery codes with the first second factor');
  return { ...creds, authenticator, totp: () => authenticator.nextCode(), pwdBrowser: browser, recoveryCodes };
}

before(async () => {
  server = await startServer({ STEP_UP_TTL: String(STEP_UP_TTL), STEP_UP_ENROLL: 'inline' });
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT, '--grant-type', 'authorization_code', '--grant-type', 'refresh_token'])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
});
after(async () => server?.stop());

type SessionState = 'none' | 'pwd' | 'mfa' | 'expired';
const REQUESTS: Record<string, Record<string, string>> = {
  'no acr': {},
  'acr pwd': { acr_values: PWD },
  'acr mfa': { acr_values: MFA },
  'acr phr': { acr_values: PHR },
  'max_age=0': { max_age: '0' },
  'prompt=login': { prompt: 'login' },
  'acr "phr mfa"': { acr_values: `${PHR} ${MFA}` },
};

interface Expected {
  pages: PageKind[];
  acr?: string;
  /** The ID token's auth_time is from this request (true) or from the earlier session (false). */
  freshAuth?: boolean;
}

const FULL: Expected = { pages: ['login', 'totp'], acr: MFA, freshAuth: true };
const STEP: Expected = { pages: ['totp'], acr: MFA, freshAuth: true };
const ENROLL: Expected = { pages: ['enroll'] };
const EXPECTED: Record<SessionState, Record<string, Expected>> = {
  none: {
    // A user who has a second factor proves it before adding another (never a password alone).
    'no acr': FULL, 'acr pwd': FULL, 'acr mfa': FULL, 'acr phr': { pages: ['login', 'totp', 'enroll'] },
    'max_age=0': FULL, 'prompt=login': FULL, 'acr "phr mfa"': FULL,
  },
  pwd: {
    'no acr': { pages: [], acr: PWD, freshAuth: false }, 'acr pwd': { pages: [], acr: PWD, freshAuth: false },
    'acr mfa': STEP, 'acr phr': { pages: ['totp', 'enroll'] }, 'max_age=0': FULL, 'prompt=login': FULL, 'acr "phr mfa"': STEP,
  },
  mfa: {
    'no acr': { pages: [], acr: MFA, freshAuth: false }, 'acr pwd': { pages: [], acr: MFA, freshAuth: false },
    'acr mfa': { pages: [], acr: MFA, freshAuth: false }, 'acr phr': ENROLL,
    'max_age=0': FULL, 'prompt=login': FULL, 'acr "phr mfa"': { pages: [], acr: MFA, freshAuth: false },
  },
  // Both factors are older than STEP_UP_TTL: mfa needs both proven again (the session stays).
  expired: {
    'no acr': { pages: [], acr: MFA, freshAuth: false }, 'acr pwd': { pages: [], acr: MFA, freshAuth: false },
    'acr mfa': FULL, 'acr phr': ENROLL, 'max_age=0': FULL, 'prompt=login': FULL, 'acr "phr mfa"': FULL,
  },
};

async function sessionFor(state: SessionState, user: TotpUser): Promise<{ browser: Browser; authTime?: number }> {
  if (state === 'none') return { browser: new Browser() };
  if (state === 'pwd') return { browser: user.pwdBrowser };
  const browser = new Browser();
  const outcome = await authorize(rp, browser, user);
  assert.deepEqual(outcome.pages, ['login', 'totp']);
  assert.equal(outcome.tokens!.claims()!.acr, MFA);
  return { browser, authTime: Number(outcome.tokens!.claims()!.auth_time) };
}

describe('step-up matrix (user with password + TOTP, no passkey)', () => {
  const table: string[] = [];

  for (const state of ['none', 'pwd', 'mfa', 'expired'] as const) {
    test(`session: ${state}`, async () => {
      // Expired sessions are all made up front and then age past STEP_UP_TTL once; the others
      // (and their users) are made right before their request, so their proofs are still fresh.
      const cells: { request: string; user?: TotpUser; browser?: Browser }[] = [];
      for (const request of Object.keys(REQUESTS)) {
        if (state !== 'expired') {
          cells.push({ request });
          continue;
        }
        const user = await createTotpUser(state);
        cells.push({ request, user, ...(await sessionFor(state, user)) });
      }
      if (state === 'expired') await new Promise((r) => setTimeout(r, (STEP_UP_TTL + 1.5) * 1000));
      for (const cell of cells) {
        cell.user ??= await createTotpUser(state);
        cell.browser ??= (await sessionFor(state, cell.user)).browser;
        const started = Math.floor(Date.now() / 1000);
        const outcome = await authorize(rp, cell.browser, cell.user, REQUESTS[cell.request]);
        const expected = EXPECTED[state][cell.request]!;
        const claims = outcome.tokens?.claims();
        const result = outcome.tokens ? `${outcome.pages.join('+') || '—'} → ${String(claims!.acr).split(':').pop()} [${(claims!.amr as string[]).join(',')}]` : `${outcome.pages.join('+')} (stopped)`;
        table.push(`| ${state} | ${cell.request} | ${result} |`);
        assert.deepEqual(outcome.pages, expected.pages, `${state} × ${cell.request}: pages`);
        if (expected.acr) {
          assert.equal(claims!.acr, expected.acr, `${state} × ${cell.request}: acr`);
          const authTime = Number(claims!.auth_time);
          if (expected.freshAuth) assert.ok(authTime >= started - 1, `${state} × ${cell.request}: auth_time is from this sign-in`);
          else assert.ok(authTime < started - (state === 'expired' ? STEP_UP_TTL : -1), `${state} × ${cell.request}: auth_time is the session's`);
          if (expected.acr === MFA && expected.freshAuth) assert.deepEqual([...(claims!.amr as string[])].sort(), ['mfa', 'otp', 'pwd']);
          if (expected.acr === PWD) assert.deepEqual(claims!.amr, ['pwd']);
        } else {
          assert.equal(outcome.tokens, undefined, 'no code while enrolment is pending');
        }
      }
    });
  }

  after(() => {
    console.log(['', '| session | request | pages → acr [amr] |', '|---|---|---|', ...table].join('\n'));
  });
});

describe('elevation timing', () => {
  test('mfa is timed from the older of its two factors: a stale password is asked again with the second factor', async () => {
    const user = await createTotpUser('stale');
    await new Promise((r) => setTimeout(r, (STEP_UP_TTL + 1.5) * 1000));
    const outcome = await authorize(rp, user.pwdBrowser, user, { acr_values: MFA });
    assert.deepEqual(outcome.pages, ['login', 'totp'], 'the session is kept, but its old password cannot combine with a new code');
    assert.equal(outcome.tokens!.claims()!.acr, MFA);
  });
});

describe('acr_values order of preference', () => {
  test('"phr mfa" and "mfa phr" both give mfa to a TOTP user (first satisfiable), "pwd mfa" gives the session as is', async () => {
    const user = await createTotpUser('order');
    const b = user.pwdBrowser;
    const pwdFirst = await authorize(rp, b, user, { acr_values: `${PWD} ${MFA}` });
    assert.deepEqual(pwdFirst.pages, [], 'pwd is listed first and the session meets it');
    assert.equal(pwdFirst.tokens!.claims()!.acr, PWD);
    const reversed = await authorize(rp, b, user, { acr_values: `${MFA} ${PHR}` });
    assert.deepEqual(reversed.pages, ['totp']);
    assert.equal(reversed.tokens!.claims()!.acr, MFA);
  });

  test('unknown acr values are ignored', async () => {
    const user = await createTotpUser('unknown');
    const outcome = await authorize(rp, user.pwdBrowser, user, { acr_values: 'urn:example:gold' });
    assert.deepEqual(outcome.pages, []);
    assert.equal(outcome.tokens!.claims()!.acr, PWD);
  });
});

describe('inline enrolment', () => {
  test('a password-only user asked for mfa sets up TOTP on the spot, then continues', async () => {
    const user = await createUser('inline');
    const browser = new Browser();
    const outcome = await authorize(rp, browser, user, { acr_values: MFA });
    assert.deepEqual(outcome.pages, ['login', 'enroll']);
    const enroll = outcome.stoppedAt!;
    const authenticator = new Authenticator(enroll.doc.querySelector('[data-totp-secret]')!.text.trim());
    const wrong = asPage(await browser.submit(enroll, 'form[action$="/enroll/totp"]', { code: '000000' }));
    assert.equal(wrong.status, 400);
    const codes = asPage(await browser.submit(wrong, 'form[action$="/enroll/totp"]', { code: await authenticator.nextCode() }));
    assert.equal(codes.doc.querySelectorAll('.recovery-codes code').length, 10);
    const done = asRedirect(await browser.submit(codes, 'form[action$="/continue"]'));
    assert.match(done, /\?code=/);
  });

  test('with STEP_UP_ENROLL=deny the RP receives unmet_authentication_requirements', async () => {
    const denyServer = await startServer({ STEP_UP_ENROLL: 'deny' });
    try {
      const created = (await denyServer.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
      const denyRp = await oidc.discovery(new URL(denyServer.issuer), 'rp', created.client_secret, undefined, insecure);
      await denyServer.cli(['users', 'create', '--email', 'deny@example.com', '--password', 'refused secret 1']);
      const outcome = await authorize(denyRp, new Browser(), { email: 'deny@example.com', password: 'refused secret 1' }, { acr_values: MFA, state: 'st' });
      assert.equal(outcome.callback?.searchParams.get('error'), 'unmet_authentication_requirements');
      assert.equal(outcome.tokens, undefined);
    } finally {
      await denyServer.stop();
    }
  });
});

describe('attacks on second factors', () => {
  test('a replayed TOTP code is refused', async () => {
    const user = await createTotpUser('replay');
    const browser = new Browser();
    const outcome = await authorize(rp, browser, user, {}, ['totp']);
    const factor = outcome.stoppedAt!;
    const code = await user.authenticator.nextCode();
    const ok = await browser.submit(factor, 'form[action$="/factor/totp"]', { code });
    assert.match(asRedirect(ok), /\?code=/);
    // The same code again, in another sign-in.
    const other = new Browser();
    const again = await authorize(rp, other, user, {}, ['totp']);
    const refused = asPage(await other.submit(again.stoppedAt!, 'form[action$="/factor/totp"]', { code }));
    assert.equal(refused.status, 401);
    assert.match(refused.html, /already used/);
  });

  test('a recovery code signs in once, and only once', async () => {
    const user = await createTotpUser('recovery');
    const code = user.recoveryCodes[0]!;
    const first = new Browser();
    const outcome = await authorize(rp, first, user, {}, ['totp']);
    const used = await first.submit(outcome.stoppedAt!, 'form[action$="/factor/recovery"]', { code: code.toUpperCase() });
    assert.match(asRedirect(used), /\?code=/);
    const second = new Browser();
    const again = await authorize(rp, second, user, {}, ['totp']);
    const refused = asPage(await second.submit(again.stoppedAt!, 'form[action$="/factor/recovery"]', { code }));
    assert.equal(refused.status, 401);
    const account = asPage(await first.get(`${server.issuer}/account`));
    assert.match(account.html, /9 of 10 left/);
    // The user is told by mail (the development transport logs it as a mail.dev event).
    const mailed = async () =>
      server.logs.join('').split('\n').some((line) => line.includes('"event":"mail.dev"') && line.includes(`"to":"${user.email}"`) && /recovery code/i.test(line));
    for (let i = 0; i < 50 && !(await mailed()); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(await mailed(), 'a "recovery code used" mail went to the user');
  });

  test('the pending second-factor state is not a session', async () => {
    const user = await createTotpUser('pending');
    const browser = new Browser();
    const outcome = await authorize(rp, browser, user, {}, ['totp']);
    assert.deepEqual(outcome.pages, ['login', 'totp']);
    // The account page still asks for a sign-in…
    const account = asPage(await browser.get(`${server.issuer}/account`));
    assert.ok(account.doc.querySelector('input[name=password]'), 'sign-in page, not the account');
    // …and a silent authorization gets login_required, not a code.
    const silent = await authorize(rp, browser, user, { prompt: 'none' });
    assert.equal(silent.callback?.searchParams.get('error'), 'login_required');
  });

  test('access tokens carry acr and auth_time for resource servers', async () => {
    const user = await createTotpUser('at');
    const outcome = await authorize(rp, new Browser(), user);
    const info = await oidc.tokenIntrospection(rp, outcome.tokens!.access_token);
    assert.equal(info.active, true);
    assert.equal(info.acr, MFA);
    assert.equal(info.auth_time, outcome.tokens!.claims()!.auth_time);
  });
});

describe('resource servers (RFC 9470 helper from plain JavaScript)', () => {
  test('a token below the required acr gets insufficient_user_authentication; a stepped-up one passes', async () => {
    const { createStepUpGuard } = await import('latchkey/resource-server');
    const api = (await server.cli(['clients', 'create', '--id', 'api', '--resource-server', '--grant-type', 'client_credentials'])) as { client_secret: string };
    const guard = createStepUpGuard({ issuer: server.issuer, clientId: 'api', clientSecret: api.client_secret });
    const http = await import('node:http');
    const resource = http.createServer((req, res) => {
      void guard.middleware({ acr: MFA, maxAge: 600 })(req, res, (err?: unknown) => {
        res.statusCode = err ? 500 : 200;
        res.end(err ? 'error' : 'secret data');
      });
    });
    await new Promise<void>((r) => resource.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(resource.address() as { port: number }).port}/`;
    try {
      const user = await createTotpUser('rs');
      const pwdTokens = (await authorize(rp, user.pwdBrowser, user)).tokens!;
      const refused = await fetch(url, { headers: { authorization: `Bearer ${pwdTokens.access_token}` } });
      assert.equal(refused.status, 401);
      assert.equal(
        refused.headers.get('www-authenticate'),
        `Bearer error="insufficient_user_authentication", error_description="a stronger authentication is required", acr_values="${MFA} ${PHR}", max_age=600`,
      );
      // The client follows the challenge: acr_values from the header, and gets a token that passes.
      const stepped = (await authorize(rp, user.pwdBrowser, user, { acr_values: `${MFA} ${PHR}`, max_age: '600' })).tokens!;
      const allowed = await fetch(url, { headers: { authorization: `Bearer ${stepped.access_token}` } });
      assert.equal(allowed.status, 200);
      assert.equal(await allowed.text(), 'secret data');
      const missing = await fetch(url);
      assert.equal(missing.status, 401);
      assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
    } finally {
      resource.close();
    }
  });

  test('a client that is not a resource server cannot introspect another client\'s tokens', async () => {
    const other = (await server.cli(['clients', 'create', '--id', 'other', '--grant-type', 'client_credentials'])) as { client_secret: string };
    const otherRp = await oidc.discovery(new URL(server.issuer), 'other', other.client_secret, undefined, insecure);
    const user = await createTotpUser('introspect');
    const tokens = (await authorize(rp, user.pwdBrowser, user)).tokens!;
    assert.equal((await oidc.tokenIntrospection(otherRp, tokens.access_token)).active, false);
    assert.equal((await oidc.tokenIntrospection(rp, tokens.access_token)).active, true);
  });
});
