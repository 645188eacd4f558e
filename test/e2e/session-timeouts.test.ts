// Browser session timeouts with the DEFAULT settings (idle 30 minutes, 14 days when "Keep me signed
// in" was ticked, at most 30 days after the sign-in) under a moved clock: test/helpers/clock.ts
// moves every stored time of one session back, which is what the server sees when its clocks move
// forward. A session is "used" the way a person uses it: an RP's silent authorization
// (prompt=none) or a visit to the account pages; each use slides the idle window, never past the
// absolute end, and the absolute end counts from the sign-in (not from a signed-out session the
// browser kept before it). Real server, real database, openid-client as the RP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect } from '../helpers/browser.ts';
import { advanceSessionClock, DAY, HOUR, MINUTE, sessionTimes } from '../helpers/clock.ts';
import { REDIRECT, authorize, createVerifiedUser, insecure, startAuthorization, type Credentials } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

// The defaults, spelled out: the server below is started without any SESSION_* setting.
const IDLE = 30 * MINUTE;
const REMEMBER_IDLE = 14 * DAY;
const MAX = 30 * DAY;

let server: TestServer;
let app: oidc.Configuration;

before(async () => {
  // The server inherits this process's environment: these tests are about the defaults.
  const set = ['SESSION_IDLE_TTL', 'SESSION_REMEMBER_TTL', 'SESSION_TTL', 'SESSION_MAX_TTL'].filter((name) => process.env[name] !== undefined);
  assert.deepEqual(set, [], 'no SESSION_* variable in the environment of this test run');
  server = await startServer();
  const created = (await server.cli(['clients', 'create', '--id', 'app', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  app = await oidc.discovery(new URL(server.issuer), 'app', created.client_secret, undefined, insecure);
});
after(async () => server?.stop());

/** Signs `browser` into the account pages through the hosted sign-in, ticking "Keep me signed in" or not. */
async function signInWith(browser: Browser, user: Credentials, remember: boolean): Promise<void> {
  const login = asPage(await browser.get(`${server.issuer}/account`));
  // The test browser sends every input, checked or not: an unticked box is sent empty.
  const page = asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password, remember: remember ? 'yes' : '' }));
  assert.equal(page.doc.querySelector('h1')?.text.trim(), 'Your account', `signed in, got ${page.url}`);
  // The RP signs in once through the same session, so its later silent authorizations get a code
  // (the session then holds a grant, whose clock moves with it).
  const first = await authorize(app, browser, user);
  assert.ok(first.tokens, `the RP signs in with the existing session (${first.pages.join(' → ')})`);
}

/** A new user signed in on a new browser. */
async function signIn(prefix: string, remember: boolean): Promise<{ browser: Browser; user: Credentials }> {
  const user = await createVerifiedUser(server, prefix);
  const browser = new Browser();
  await signInWith(browser, user, remember);
  return { browser, user };
}

/** An RP's silent authorization: true when the browser's sign-in is still there (and used now). */
async function silentSignIn(browser: Browser): Promise<boolean> {
  const { step } = await startAuthorization(browser, app, { prompt: 'none' });
  const callback = new URL(asRedirect(step));
  if (callback.searchParams.get('code')) return true;
  assert.equal(callback.searchParams.get('error'), 'login_required', `login_required or a code, got ${callback.search}`);
  return false;
}

/** The account page: true when it shows the account (and uses the session), false when it asks to sign in. */
async function accountPage(browser: Browser): Promise<boolean> {
  const page = asPage(await browser.get(`${server.issuer}/account`));
  if (page.doc.querySelector('form[action$="/login"]')) return false;
  assert.equal(page.doc.querySelector('h1')?.text.trim(), 'Your account', `the account page or the sign-in page, got ${page.url}`);
  return true;
}

/** The session still works for every way of using it: an RP finds it without a prompt, and so do the account pages. */
async function assertSignedIn(browser: Browser, why: string) {
  assert.equal(await silentSignIn(browser), true, `${why}: an RP finds the session`);
  assert.equal(await accountPage(browser), true, `${why}: the account page opens`);
}

/** The use just made gave the session a full idle window of `seconds` (less a minute for the test's own steps). */
async function assertFreshIdleWindow(browser: Browser, seconds: number, what: string) {
  // (Reading the embedded database restarts the server: a few seconds pass.)
  const { left } = await sessionTimes(server, browser);
  assert.ok(left <= seconds && left > seconds - MINUTE, `the use gave it a fresh ${what}, not ${left} s`);
}

/** The session is over for every way of using it: the RP must sign the user in again, and so must the account pages. */
async function assertSignedOut(browser: Browser, why: string) {
  assert.equal(await silentSignIn(browser), false, `${why}: an RP gets login_required`);
  assert.equal(await accountPage(browser), false, `${why}: the account page asks to sign in`);
}

describe('idle timeout, not remembered (30 minutes)', () => {
  test('used 29 minutes after the last use it still works; left 31 minutes it is refused', async () => {
    const { browser } = await signIn('idle', false);
    await advanceSessionClock(server, browser, 29 * MINUTE);
    await assertSignedIn(browser, '29 minutes unused');
    await assertFreshIdleWindow(browser, IDLE, `${IDLE} s`);

    await advanceSessionClock(server, browser, 31 * MINUTE);
    await assertSignedOut(browser, '31 minutes unused');
  });

  test('each use slides the window: used at 20 minutes, then 20 minutes later, still signed in, by an RP or the account pages', async () => {
    const { browser } = await signIn('slide', false);
    // Used through the account pages...
    await advanceSessionClock(server, browser, 20 * MINUTE);
    assert.equal(await accountPage(browser), true, '20 minutes after the sign-in');
    await advanceSessionClock(server, browser, 20 * MINUTE);
    // ...and 40 minutes after the sign-in (more than the idle timeout) an RP still finds it.
    assert.equal(await silentSignIn(browser), true, '20 minutes after the last use, 40 after the sign-in');
    // Used through an RP: the account pages find it 20 minutes later.
    await advanceSessionClock(server, browser, 20 * MINUTE);
    assert.equal(await accountPage(browser), true, '20 minutes after the RP used it, 60 after the sign-in');
    assert.ok((await sessionTimes(server, browser)).age >= HOUR - 5);

    await advanceSessionClock(server, browser, 31 * MINUTE);
    await assertSignedOut(browser, '31 minutes after the last use');
  });
});

describe('idle timeout, "Keep me signed in" (14 days)', () => {
  test('a remembered session survives 13 days unused, but not 15', async () => {
    const { browser } = await signIn('remember', true);
    // Far past the short idle timeout: a remembered session idles for 14 days.
    await advanceSessionClock(server, browser, 13 * DAY);
    await assertSignedIn(browser, '13 days unused');
    await assertFreshIdleWindow(browser, REMEMBER_IDLE, '14 days (the absolute end is 17 days away)');

    // 28 days after the sign-in: before the absolute end, so this is the idle timeout.
    await advanceSessionClock(server, browser, 15 * DAY);
    await assertSignedOut(browser, '15 days unused');
  });
});

describe('absolute timeout (30 days after the sign-in)', () => {
  test('a remembered session used every 10 days still ends 30 days after the sign-in', async () => {
    const { browser } = await signIn('absolute', true);
    for (const day of [10, 20]) {
      await advanceSessionClock(server, browser, 10 * DAY);
      await assertSignedIn(browser, `used on day ${day}`);
    }
    // Used on day 29 and a last time an hour before the end: each use slides the idle window, but
    // never past 30 days after the sign-in.
    await advanceSessionClock(server, browser, 9 * DAY);
    assert.equal(await silentSignIn(browser), true, 'used on day 29');
    await advanceSessionClock(server, browser, DAY - HOUR);
    assert.equal(await accountPage(browser), true, 'used an hour before the absolute end');
    const times = await sessionTimes(server, browser);
    assert.ok(times.lifetime <= MAX, `saved to live ${times.lifetime} s after its creation, more than ${MAX}`);
    assert.ok(times.left <= HOUR + 5, `an hour left at most, not ${times.left} s`);

    // An hour and a minute later: used an hour ago, well inside the 14-day idle window, and over.
    await advanceSessionClock(server, browser, HOUR + MINUTE);
    await assertSignedOut(browser, '30 days and a minute after the sign-in');
  });

  test('the 30 days count from the sign-in, not from an earlier signed-out session of the same browser', async () => {
    const { browser, user } = await signIn('returning', false);
    await advanceSessionClock(server, browser, 31 * MINUTE);
    await assertSignedOut(browser, 'idle');
    // The browser keeps coming back signed out (an RP checking silently every 13 days): the
    // provider keeps a session for its cookie, with nobody signed in, for 29 days.
    for (const gap of [13 * DAY, 13 * DAY, 3 * DAY - HOUR]) {
      await advanceSessionClock(server, browser, gap);
      assert.equal(await silentSignIn(browser), false, 'still signed out');
    }
    await signInWith(browser, user, true);
    const times = await sessionTimes(server, browser);
    assert.ok(times.age < MINUTE, `a session signed in just now is ${times.age} s old`);
    assert.ok(times.left > REMEMBER_IDLE - MINUTE, `the remembered idle window, not ${times.left} s`);
    // Two days later (31 after the browser's first signed-out visit) it is still there.
    await advanceSessionClock(server, browser, 2 * DAY);
    assert.equal(await silentSignIn(browser), true, 'two days after a remembered sign-in');
  });
});
