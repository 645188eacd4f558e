// Attacks on second factors and the sessions around them (issue 9), performed against the real
// server: enrolment from a pending sign-in (someone who knows only the password), security mails
// for every factor change, inline enrolment behind the recent-auth gate, the known-device cookie,
// elevation renewed by one factor, re-authentication as a guessing oracle, and notice text on
// the account page.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { SmtpSink } from '../helpers/smtp-sink.ts';
import { Authenticator, base32Decode, hotp, stepAt } from '../helpers/totp.ts';
import { REDIRECT, authorize, insecure, pageKind, startAuthorization, type Credentials, type PageKind } from '../helpers/rp.ts';
import { Device, RpEndpoint, addPasskey, enterPassword, launchChromium, signIntoAccount, skipWithoutChromium, usePasskey } from '../helpers/chromium.ts';

const MFA = 'urn:latchkey:acr:mfa';
const PHR = 'urn:latchkey:acr:phr';
const FAST_MAIL = { MAIL_POLL_INTERVAL: '1', MAIL_RETRY_BASE: '1', MAIL_RETRY_MAX_DELAY: '2' };
const RECENT_AUTH_TTL = 2;
const STEP_UP_TTL = 3;
const REAUTH_MAX_FAILURES = 5; // the default
// Where a walk through the sign-in stops: any page after the password.
const AFTER_PASSWORD: PageKind[] = ['totp', 'enroll', 'consent', 'other'];
const ADDED = /A sign-in method was added to your account/;
const REMOVED = /A sign-in method was removed from your account/;
const NEW_CODES = /New recovery codes were created/;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Env {
  server: TestServer;
  rp: oidc.Configuration;
}

interface User extends Credentials {
  id: string;
}

interface TotpUser extends User {
  secret: string;
  authenticator: Authenticator;
  /** The browser that enrolled TOTP at /account: signed in (with the password). */
  browser: Browser;
  recoveryCodes: string[];
}

let sink: SmtpSink;
/** STEP_UP_ENROLL=inline, mail to the sink. */
let main: Env;
/** STEP_UP_ENROLL=deny. */
let deny: Env;
/** Short RECENT_AUTH_TTL and STEP_UP_TTL, a per-account password budget of 3, mail to the sink. */
let timed: Env;
let userCounter = 0;

async function startEnv(env: Record<string, string>): Promise<Env> {
  const server = await startServer(env);
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  return { server, rp: await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure) };
}

async function createUser(env: Env, prefix: string): Promise<User> {
  const email = `${prefix}${++userCounter}@example.com`;
  // Unique, and built from nothing the password policy refuses (the address, the name, the product).
  const password = `violet teapot orbit ${userCounter}`;
  const { id } = (await env.server.cli(['users', 'create', '--email', email, '--password', password, '--verified'])) as { id: string };
  return { id, email, password };
}

/** Answers "Confirm it's you" with the password when an account page asks for it (slow machine). */
async function confirmIfAsked(browser: Browser, page: Page, password: string): Promise<Page> {
  if (!page.doc.querySelector('form[action="/account/reauth"] input[name=password]')) return page;
  return asPage(await browser.submit(page, 'form[action="/account/reauth"]', { password }));
}

/** A browser signed in at /account: password, then the TOTP code when the user has one. */
async function signInToAccount(env: Env, user: Credentials): Promise<{ browser: Browser; page: Page }> {
  const browser = new Browser();
  const login = asPage(await browser.get(`${env.server.issuer}/account`));
  let page = asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password }));
  if (pageKind(page) === 'totp') page = asPage(await browser.submit(page, 'form[action$="/factor/totp"]', { code: await user.totp!() }));
  assert.equal(page.doc.querySelector('h1')?.text.trim(), 'Your account', `signed in to /account: ${page.url}`);
  return { browser, page };
}

/** A user who signed in with the password at /account, then turned TOTP on there (as step-up.test.ts does). */
async function createTotpUser(env: Env, prefix: string): Promise<TotpUser> {
  const user = await createUser(env, prefix);
  const { browser } = await signInToAccount(env, user);
  const setup = await confirmIfAsked(browser, asPage(await browser.get(`${env.server.issuer}/account/totp/setup`)), user.password);
  const secret = setup.doc.querySelector('[data-totp-secret]')!.text.trim();
  const authenticator = new Authenticator(secret);
  const codesPage = asPage(await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
  const recoveryCodes = codesPage.doc.querySelectorAll('.recovery-codes code').map((c) => c.text.trim());
  assert.equal(recoveryCodes.length, 10, 'ten recovery codes with the first second factor');
  return { ...user, secret, authenticator, totp: () => authenticator.nextCode(), browser, recoveryCodes };
}

function uidOf(page: Page | string): string {
  const url = typeof page === 'string' ? page : page.url;
  const uid = /\/interaction\/([^/?]+)/.exec(new URL(url).pathname)?.[1];
  assert.ok(uid, `an interaction page: ${url}`);
  return uid;
}

function csrfOf(page: Page): string {
  const token = page.doc.querySelector('input[name=_csrf]')?.getAttribute('value') ?? page.doc.querySelector('[data-csrf]')?.getAttribute('data-csrf');
  assert.ok(token, `a CSRF token on ${page.url}`);
  return token;
}

function cookie(browser: Browser, issuer: string, name: string) {
  return browser.jar.getCookiesSync(`${issuer}/`).find((c) => c.key === name);
}

/** Whether a mail matching `subject` reaches `to` within `timeoutMs`. */
async function mailed(to: string, subject: RegExp, timeoutMs = 8000): Promise<boolean> {
  try {
    await sink.next(to, subject, timeoutMs);
    return true;
  } catch {
    return false;
  }
}

function postJson(browser: Browser, url: string, csrf: string, body: unknown = {}) {
  return browser.request(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf } });
}

/**
 * Control: the attacker's CSRF token and interaction cookie are good for this pending sign-in (its
 * passkey sign-in options answer), so a refusal below is the server's decision, not a bad request.
 */
async function assertReachesPendingSignIn(browser: Browser, issuer: string, uid: string, csrf: string) {
  const res = await postJson(browser, `${issuer}/interaction/${uid}/passkey/options`, csrf);
  const text = await res.text();
  assert.ok(res.status === 200 && /"challenge"/.test(text), `control: the pending sign-in answers its passkey options (${res.status} ${text.slice(0, 200)})`);
}

/**
 * From a pending sign-in (`pending`: the page after the password), tries every enrolment route
 * an attacker could reach and returns what leaked.
 */
async function attackPendingSignIn(env: Env, attacker: Browser, pending: Page): Promise<string[]> {
  const problems: string[] = [];
  const issuer = env.server.issuer;
  const at = (path: string) => `${issuer}/interaction/${uidOf(pending)}/${path}`;
  const csrf = csrfOf(pending);
  await assertReachesPendingSignIn(attacker, issuer, uidOf(pending), csrf);
  const leaks = (label: string, step: Page | { redirect: string }) => {
    if (!isPage(step)) return;
    if (step.doc.querySelector('[data-totp-secret]') || /otpauth:\/\//.test(step.html)) problems.push(`${label}: shows a TOTP secret`);
    if (step.doc.querySelectorAll('.recovery-codes code').length > 0) problems.push(`${label}: shows recovery codes`);
  };

  const enroll = await attacker.get(at('enroll'));
  leaks('GET /enroll', enroll);
  if (isPage(enroll) && pageKind(enroll) === 'enroll') problems.push(`GET /enroll (${enroll.status}): the enrolment page is offered`);

  leaks('POST /enroll/totp', await attacker.follow(at('enroll/totp'), { method: 'POST', body: new URLSearchParams({ _csrf: csrf, code: '123456' }) }));

  const options = await postJson(attacker, at('passkey/register-options'), csrf);
  const optionsText = await options.text();
  if (/"challenge"/.test(optionsText)) problems.push(`POST /passkey/register-options (${options.status}): WebAuthn registration options with a challenge`);

  leaks('GET /recovery-codes', await attacker.get(at('recovery-codes')));

  const cont = await attacker.follow(at('continue'), { method: 'POST', body: new URLSearchParams({ _csrf: csrf }) });
  if (!isPage(cont) && new URL(cont.redirect).searchParams.has('code')) problems.push('POST /continue: the RP got an authorization code');
  leaks('POST /continue', cont);
  return problems;
}

/** The owner signs in with one of their original recovery codes; returns what went wrong. */
async function originalRecoveryCodeWorks(env: Env, user: Credentials, code: string, remaining: number): Promise<string[]> {
  const browser = new Browser();
  const outcome = await authorize(env.rp, browser, user, {}, AFTER_PASSWORD);
  const factor = outcome.stoppedAt!;
  if (!factor?.doc.querySelector('form[action$="/factor/recovery"]')) return [`the owner's second-factor page offers no recovery code (pages ${outcome.pages.join(',')})`];
  const used = await browser.submit(factor, 'form[action$="/factor/recovery"]', { code });
  if (isPage(used) || !new URL(used.redirect).searchParams.has('code')) return [`the owner's original recovery code no longer signs in (${isPage(used) ? used.status : used.redirect})`];
  const account = asPage(await browser.get(`${env.server.issuer}/account`));
  const left = new RegExp(`${remaining} of 10 left`);
  return left.test(account.html) ? [] : [`the account page does not say "${remaining} of 10 left": the original set was replaced`];
}

before(async () => {
  sink = new SmtpSink();
  await sink.start();
  const smtp = { SMTP_URL: `smtp://127.0.0.1:${sink.port}`, ...FAST_MAIL };
  [main, deny, timed] = await Promise.all([
    // A high per-IP budget: the re-authentication attacks below must not block other sign-ins from loopback.
    startEnv({ STEP_UP_ENROLL: 'inline', LOGIN_RATE_LIMIT_PER_IP: '1000', ...smtp }),
    startEnv({ STEP_UP_ENROLL: 'deny' }),
    startEnv({
      STEP_UP_ENROLL: 'inline',
      RECENT_AUTH_TTL: String(RECENT_AUTH_TTL),
      STEP_UP_TTL: String(STEP_UP_TTL),
      LOGIN_RATE_LIMIT_PER_ACCOUNT: '3',
      ...smtp,
    }),
  ]);
});

after(async () => {
  await Promise.all([main?.server.stop(), deny?.server.stop(), timed?.server.stop()]);
  await sink?.stop();
});

describe('enrolment from a pending sign-in (attacker knows only the password)', () => {
  const variants: { name: string; env: () => Env; params: Record<string, string> }[] = [
    { name: 'no acr_values', env: () => main, params: {} },
    { name: 'acr_values=phr', env: () => main, params: { acr_values: PHR } },
    { name: 'STEP_UP_ENROLL=deny', env: () => deny, params: {} },
  ];
  for (const variant of variants) {
    test(`${variant.name}: a TOTP user's pending sign-in enrols nothing, shows no codes, and does not finish`, async () => {
      const env = variant.env();
      const user = await createTotpUser(env, 'takeover');
      const attacker = new Browser();
      const outcome = await authorize(env.rp, attacker, { email: user.email, password: user.password }, variant.params, AFTER_PASSWORD);
      const problems: string[] = [];
      if (outcome.pages.join(',') !== 'login,totp') problems.push(`the page after the password is ${outcome.pages.slice(1).join(',') || '(none)'}, not the TOTP page`);
      assert.ok(outcome.stoppedAt, `the attacker stopped on a page (${outcome.pages.join(',')})`);
      problems.push(...(await attackPendingSignIn(env, attacker, outcome.stoppedAt)));
      // None of that touched the owner's recovery codes.
      problems.push(...(await originalRecoveryCodeWorks(env, user, user.recoveryCodes[3]!, 9)));
      assert.deepEqual(problems, []);
    });
  }

  test('a user with no second factor still enrols inline when the RP asks for mfa, and is mailed about it', async () => {
    const user = await createUser(main, 'inline');
    const browser = new Browser();
    const outcome = await authorize(main.rp, browser, user, { acr_values: MFA });
    assert.deepEqual(outcome.pages, ['login', 'enroll']);
    const enroll = outcome.stoppedAt!;
    const authenticator = new Authenticator(enroll.doc.querySelector('[data-totp-secret]')!.text.trim());
    const codes = asPage(await browser.submit(enroll, 'form[action$="/enroll/totp"]', { code: await authenticator.nextCode() }));
    assert.equal(codes.doc.querySelectorAll('.recovery-codes code').length, 10);
    assert.match(asRedirect(await browser.submit(codes, 'form[action$="/continue"]')), /\?code=/);
    assert.ok(await mailed(user.email, ADDED), `an "added" mail to the user after inline enrolment; got ${JSON.stringify(sink.to(user.email).map((m) => m.subject))}`);
  });

  test('with STEP_UP_ENROLL=deny a user with no second factor asked for mfa sends the RP unmet_authentication_requirements', async () => {
    const user = await createUser(deny, 'deny');
    const outcome = await authorize(deny.rp, new Browser(), user, { acr_values: MFA });
    assert.equal(outcome.callback?.searchParams.get('error'), 'unmet_authentication_requirements');
    assert.equal(outcome.tokens, undefined);
  });
});

describe('security mails for factor changes', () => {
  test('turning TOTP on, regenerating recovery codes and turning TOTP off each mail the user', async () => {
    const user = await createTotpUser(main, 'mails');
    const account = asPage(await user.browser.get(`${main.server.issuer}/account`));
    const regenerated = asPage(await user.browser.submit(account, 'form[action="/account/recovery-codes"]'));
    assert.equal(regenerated.doc.querySelectorAll('.recovery-codes code').length, 10, 'new codes shown');
    const again = asPage(await user.browser.get(`${main.server.issuer}/account`));
    const off = asPage(await user.browser.submit(again, 'form[action="/account/totp/disable"]', { code: await user.authenticator.nextCode() }));
    assert.equal(off.doc.querySelector('form[action="/account/totp/disable"]'), null, 'TOTP is off');
    const [added, codes, removed] = await Promise.all([mailed(user.email, ADDED), mailed(user.email, NEW_CODES), mailed(user.email, REMOVED)]);
    const subjects = sink.to(user.email).map((m) => m.subject);
    assert.deepEqual({ added, codes, removed }, { added: true, codes: true, removed: true }, `mails received: ${JSON.stringify(subjects)}`);
  });
});

describe('recent-auth gate, elevation expiry, known-device cookie (short TTLs)', () => {
  test('inline enrolment from a session older than RECENT_AUTH_TTL asks for the password first', async () => {
    const user = await createUser(timed, 'recent');
    const { browser } = await signInToAccount(timed, user);
    await sleep((RECENT_AUTH_TTL + 1) * 1000);
    const { step } = await startAuthorization(browser, timed.rp, { acr_values: MFA });
    assert.ok(isPage(step), `a page, not ${!isPage(step) && step.redirect}`);
    assert.equal(pageKind(step), 'login', 'the first page is the password form, not the enrolment page');
    const next = asPage(await browser.submit(step, 'form[action$="/login"]', { email: user.email, password: user.password }));
    assert.equal(pageKind(next), 'enroll', 'after the password, enrolment');
  });

  test('an expired mfa elevation is not renewed by re-authenticating with the password alone', async () => {
    const user = await createTotpUser(timed, 'expiry');
    const { browser } = await signInToAccount(timed, user);
    await sleep((STEP_UP_TTL + 1) * 1000);
    const reauth = asPage(await browser.get(`${timed.server.issuer}/account/reauth?return_to=/account`));
    const back = asPage(await browser.submit(reauth, 'form[action="/account/reauth"]', { password: user.password }));
    assert.equal(back.doc.querySelector('h1')?.text.trim(), 'Your account', 're-authenticated with the password');
    const { step } = await startAuthorization(browser, timed.rp, { acr_values: MFA });
    assert.ok(isPage(step), `the TOTP is asked again; instead the browser went straight back to the RP: ${!isPage(step) && step.redirect}`);
    assert.equal(pageKind(step), 'totp');
  });

  test('a password reset voids the known-device cookie: wrong passwords from that browser are counted again', async () => {
    const owner = await createUser(timed, 'device');
    const browserB = new Browser();
    const signedIn = await authorize(timed.rp, browserB, owner);
    assert.ok(signedIn.tokens, 'the owner signed in');
    assert.ok(cookie(browserB, timed.server.issuer, 'lk.device'), 'browser B holds a device cookie');

    // The owner resets the password (from another browser), by the link in the mail.
    const other = new Browser();
    const forgot = asPage(await other.get(`${timed.server.issuer}/forgot-password`));
    await other.submit(forgot, 'form[action="/forgot-password"]', { email: owner.email });
    const link = (await sink.next(owner.email, /Reset your password/)).links.find((l) => l.startsWith(`${timed.server.issuer}/reset-password?token=`));
    assert.ok(link, 'a reset link');
    const form = asPage(await other.get(link));
    const done = asPage(await other.submit(form, 'form[action="/reset-password"]', { password: 'the owner new password 1' }));
    assert.equal(done.doc.querySelector('h1')?.text.trim(), 'Your password was changed');

    // Browser B, still holding the old cookie, guesses (per-account budget: 3).
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { step } = await startAuthorization(browserB, timed.rp, { prompt: 'login' });
      const answer = asPage(await browserB.submit(asPage(step), 'form[action$="/login"]', { email: owner.email, password: `guess ${i}` }));
      statuses.push(answer.status);
    }
    assert.deepEqual(statuses, [401, 401, 401, 429]);
  });
});

describe('password reset', () => {
  test('keeps the second factor, ends the sessions and mails the list of sign-in methods', async () => {
    const user = await createTotpUser(timed, 'reset');
    const other = new Browser();
    const forgot = asPage(await other.get(`${timed.server.issuer}/forgot-password`));
    await other.submit(forgot, 'form[action="/forgot-password"]', { email: user.email });
    const link = (await sink.next(user.email, /Reset your password/)).links.find((l) => l.startsWith(`${timed.server.issuer}/reset-password?token=`))!;
    const form = asPage(await other.get(link));
    asPage(await other.submit(form, 'form[action="/reset-password"]', { password: 'a brand new password 1' }));

    const changed = await sink.next(user.email, /Your password was changed/);
    assert.match(changed.text, /Authenticator app/, 'the mail lists the authenticator app the reset kept');
    assert.match(changed.text, /10 unused recovery codes/);
    // The session that enrolled TOTP is gone, and the new password still needs the second factor.
    const account = await user.browser.request(`${timed.server.issuer}/account`);
    assert.ok(account.status >= 300 && account.status < 400 && /\/auth\?/.test(account.headers.get('location') ?? ''), 'the old session was ended');
    const fresh = new Browser();
    const { step } = await startAuthorization(fresh, timed.rp);
    const next = asPage(await fresh.submit(asPage(step), 'form[action$="/login"]', { email: user.email, password: 'a brand new password 1' }));
    assert.equal(pageKind(next), 'totp', 'the new password is followed by the kept second factor');
  });
});

describe('known-device cookie', () => {
  test('is set only after the whole sign-in, not after the password of a TOTP user', async () => {
    const user = await createTotpUser(main, 'devcookie');
    const browser = new Browser();
    const outcome = await authorize(main.rp, browser, user, {}, ['totp']);
    assert.deepEqual(outcome.pages, ['login', 'totp']);
    assert.equal(cookie(browser, main.server.issuer, 'lk.device')?.key, undefined, 'no lk.device cookie after the password step alone');
    const done = await browser.submit(outcome.stoppedAt!, 'form[action$="/factor/totp"]', { code: await user.authenticator.nextCode() });
    assert.match(asRedirect(done), /\?code=/);
    assert.ok(cookie(browser, main.server.issuer, 'lk.device'), 'lk.device cookie after the whole sign-in');
  });
});

describe('re-authentication is not an oracle', () => {
  const pgOnly = !process.env.DATABASE_URL ? 'needs PostgreSQL (DATABASE_URL): PGlite has no real concurrency' : false;

  /** Sends 50 wrong answers at once on one CSRF token, then the right one; returns what went wrong. */
  async function guess(browser: Browser, field: 'password' | 'code', wrong: string[], right: () => Promise<string>): Promise<string[]> {
    const issuer = main.server.issuer;
    const form = asPage(await browser.get(`${issuer}/account/reauth?return_to=/account`));
    assert.ok(form.doc.querySelector('form[action="/account/reauth"]'), 'the re-authentication page');
    const csrf = csrfOf(form);
    const post = (value: string) =>
      browser.request(`${issuer}/account/reauth`, { method: 'POST', body: new URLSearchParams({ _csrf: csrf, return_to: '/account', [field]: value }) });
    const statuses = await Promise.all(
      wrong.map(async (value) => {
        const res = await post(value);
        await res.arrayBuffer();
        return res.status;
      }),
    );
    const problems: string[] = [];
    const evaluated = statuses.filter((s) => s === 401).length;
    assert.ok(evaluated >= 1, `control: the first wrong ${field} is checked and refused (statuses ${[...new Set(statuses)].join(',')})`);
    if (evaluated > REAUTH_MAX_FAILURES) problems.push(`${evaluated} of ${wrong.length} wrong ${field}s were evaluated (401)`);
    const accepted = await post(await right());
    await accepted.arrayBuffer();
    if (accepted.status === 303 && accepted.headers.get('location') === '/account') problems.push(`the right ${field} was then accepted for the old session`);
    const account = await browser.request(`${issuer}/account`);
    await account.arrayBuffer();
    if (!(account.status >= 300 && account.status < 400 && /\/auth\?/.test(account.headers.get('location') ?? ''))) problems.push(`the session still opens /account (${account.status})`);
    return problems;
  }

  test('50 concurrent wrong passwords: at most REAUTH_MAX_FAILURES evaluated, then the session is over', { skip: pgOnly }, async () => {
    const user = await createTotpUser(main, 'oracle-pwd');
    const wrong = Array.from({ length: 50 }, (_, i) => `wrong password ${i}`);
    assert.deepEqual(await guess(user.browser, 'password', wrong, async () => user.password), []);
  });

  test('50 concurrent wrong TOTP codes on a fresh session: the same', { skip: pgOnly }, async () => {
    const user = await createTotpUser(main, 'oracle-code');
    const { browser } = await signInToAccount(main, user);
    // Wrong for sure: none is a code of a step near now.
    const key = base32Decode(user.secret);
    const now = stepAt(Date.now() / 1000);
    const valid = new Set([-3, -2, -1, 0, 1, 2, 3].map((d) => hotp(key, now + d)));
    const wrong: string[] = [];
    for (let n = 100000; wrong.length < 50; n += 7919) if (!valid.has(String(n))) wrong.push(String(n));
    assert.deepEqual(await guess(browser, 'code', wrong, () => user.authenticator.nextCode()), []);
  });

  test('a successful re-authentication rotates the session cookie; the old value opens nothing', async () => {
    const issuer = main.server.issuer;
    const user = await createUser(main, 'rotate');
    const { browser } = await signInToAccount(main, user);
    const old = browser.jar.getCookiesSync(`${issuer}/`).filter((c) => c.key === 'lk.session' || c.key === 'lk.session.sig');
    assert.ok(old.some((c) => c.key === 'lk.session'), 'a session cookie');
    const form = asPage(await browser.get(`${issuer}/account/reauth?return_to=/account`));
    const back = asPage(await browser.submit(form, 'form[action="/account/reauth"]', { password: user.password }));
    assert.equal(back.doc.querySelector('h1')?.text.trim(), 'Your account');
    assert.notEqual(cookie(browser, issuer, 'lk.session')?.value, old.find((c) => c.key === 'lk.session')!.value, 'the session cookie changed');

    const stale = new Browser();
    for (const c of old) await stale.jar.setCookie(c.toString(), `${issuer}/`);
    const res = await stale.request(`${issuer}/account`);
    await res.arrayBuffer();
    assert.ok(res.status >= 300 && res.status < 400 && /\/auth\?/.test(res.headers.get('location') ?? ''), `the old cookie gets no session (${res.status} ${res.headers.get('location')})`);
    // The browser itself is still signed in, with the new value.
    assert.equal(asPage(await browser.get(`${issuer}/account`)).doc.querySelector('h1')?.text.trim(), 'Your account');
  });
});

describe('account page notices', () => {
  test('/account?notice=<free text> does not show attacker text', async () => {
    const user = await createUser(main, 'notice');
    const { browser } = await signInToAccount(main, user);
    const page = asPage(await browser.get(`${main.server.issuer}/account?notice=Your%20account%20is%20locked.%20Call%20555-0100`));
    assert.equal(page.doc.querySelector('h1')?.text.trim(), 'Your account');
    assert.ok(!page.html.includes('555-0100'), 'the attacker\'s phone number is not on the page');
  });
});

describe('passkeys from a pending sign-in (Chromium)', { skip: skipWithoutChromium }, () => {
  let chrome: Awaited<ReturnType<typeof launchChromium>>;
  let endpoint: RpEndpoint;
  let browserRp: oidc.Configuration;

  before(async () => {
    endpoint = new RpEndpoint();
    [chrome] = await Promise.all([launchChromium(), endpoint.start()]);
    const created = (await main.server.cli(['clients', 'create', '--id', 'browser-rp', '--first-party', '--redirect-uri', endpoint.redirectUri])) as { client_secret: string };
    browserRp = await oidc.discovery(new URL(main.server.issuer), 'browser-rp', created.client_secret, undefined, insecure);
  });
  after(async () => {
    await chrome?.close();
    endpoint?.stop();
  });

  test('an attacker with the password of a TOTP user cannot register a passkey and sign in with it at phr', async () => {
    const issuer = main.server.issuer;
    const user = await createTotpUser(main, 'pk-takeover');
    const device = await Device.open(chrome);
    const problems: string[] = [];
    try {
      const { page } = device;
      await endpoint.authorize(browserRp, device);
      await enterPassword(page, user);
      await page.getByRole('heading', { name: 'Two-step verification' }).waitFor();
      const uid = uidOf(page.url());
      const csrf = (await page.locator('input[name=_csrf]').first().getAttribute('value'))!;
      // What the enrolment page's script would do, from the pending second-factor page.
      await device.present(true);
      const registration = await page.evaluate(
        async ({ uid, csrf }) => {
          const post = (path: string, body: unknown) =>
            fetch(`/interaction/${uid}/${path}`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf }, body: JSON.stringify(body) });
          // Control: this token and interaction are good (the passkey sign-in options answer).
          const control = await post('passkey/options', {});
          const controlText = await control.text();
          if (control.status !== 200 || !controlText.includes('"challenge"')) return { control: control.status };
          const optionsRes = await post('passkey/register-options', {});
          let options: { challenge?: string } | undefined;
          try {
            options = (await optionsRes.json()) as { challenge?: string };
          } catch {
            options = undefined;
          }
          if (!optionsRes.ok || !options?.challenge) return { options: optionsRes.status };
          const lib = (globalThis as unknown as { SimpleWebAuthnBrowser: { startRegistration(o: { optionsJSON: unknown }): Promise<unknown> } }).SimpleWebAuthnBrowser;
          let response: unknown;
          try {
            response = await lib.startRegistration({ optionsJSON: options });
          } catch (err) {
            return { options: optionsRes.status, challenge: true, created: String(err) };
          }
          const registered = await post('passkey/register', { response, name: 'attacker key' });
          return { options: optionsRes.status, challenge: true, created: 'yes', register: registered.status, body: (await registered.text()).slice(0, 200) };
        },
        { uid, csrf },
      );
      assert.equal(registration.control, undefined, `control: the pending sign-in answers its passkey options (${JSON.stringify(registration)})`);
      if (registration.challenge) problems.push(`register-options gave a challenge (${JSON.stringify(registration)})`);
      if (registration.register !== undefined && registration.register < 300) problems.push(`the server registered the attacker's passkey (${registration.register})`);

      // With whatever the authenticator now holds, the attacker tries passwordless at phr.
      if ((await device.credentials()).length > 0) {
        const flow = await endpoint.authorize(browserRp, device, { acr_values: PHR, prompt: 'login' });
        await usePasskey(device, 'Sign in with a passkey');
        const outcome = await Promise.race([
          flow.back.then((url) => ({ url })),
          page.locator('[data-passkey-error]').waitFor({ state: 'visible' }).then(() => ({ url: undefined })),
        ]);
        if (outcome.url?.searchParams.get('code')) {
          const claims = (await flow.redeem(outcome.url)).claims()!;
          problems.push(`the attacker signed in as ${String(claims.email)} with acr ${String(claims.acr)}`);
        }
      }
    } finally {
      await device.close();
    }
    const account = asPage(await user.browser.get(`${issuer}/account`));
    if (!/No passkeys yet\./.test(account.html)) problems.push('the owner\'s account lists a passkey they never made');
    assert.deepEqual(problems, []);
  });

  test('an attacker with the password of a passkey user cannot enrol TOTP, see recovery codes, or finish the sign-in', async () => {
    const owner = await createUser(main, 'pk-owner');
    const device = await Device.open(chrome);
    let codes: string[];
    try {
      await signIntoAccount(device, main.server.issuer, owner);
      codes = await addPasskey(device, 'Owner laptop');
    } finally {
      await device.close();
    }
    assert.equal(codes.length, 10);

    const attacker = new Browser();
    const outcome = await authorize(main.rp, attacker, owner, {}, AFTER_PASSWORD);
    const pending = outcome.stoppedAt;
    assert.ok(pending, `the attacker stopped on a page (${outcome.pages.join(',')})`);
    const problems: string[] = [];
    const at = (path: string) => `${main.server.issuer}/interaction/${uidOf(pending)}/${path}`;
    const csrf = csrfOf(pending);
    await assertReachesPendingSignIn(attacker, main.server.issuer, uidOf(pending), csrf);
    const enroll = await attacker.get(at('enroll'));
    const secret = isPage(enroll) ? enroll.doc.querySelector('[data-totp-secret]')?.text.trim() : undefined;
    if (secret) problems.push('GET /enroll shows the attacker a new TOTP secret');
    const code = secret ? await new Authenticator(secret).nextCode() : '123456';
    const enrolled = await attacker.follow(at('enroll/totp'), { method: 'POST', body: new URLSearchParams({ _csrf: csrf, code }) });
    if (isPage(enrolled) && enrolled.doc.querySelectorAll('.recovery-codes code').length > 0) problems.push('POST /enroll/totp shows the attacker recovery codes');
    const cont = await attacker.follow(at('continue'), { method: 'POST', body: new URLSearchParams({ _csrf: csrf }) });
    if (!isPage(cont) && new URL(cont.redirect).searchParams.has('code')) problems.push('POST /continue: the RP got an authorization code for the attacker');
    problems.push(...(await originalRecoveryCodeWorks(main, owner, codes[0]!, 9)));
    assert.deepEqual(problems, []);
  });
});
