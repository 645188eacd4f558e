// Brute-force defence: attackers are slowed down per account and per IP, the account's owner on
// a browser they signed in with before is not, and unknown addresses behave like known ones.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect, type Page } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, authorize, insecure } from '../helpers/rp.ts';
import { Authenticator } from '../helpers/totp.ts';

const ALICE = { email: 'alice@example.com', password: 'correct amber password' };
let server: TestServer;
let rp: oidc.Configuration;
/** Alice's own browser: she signed in with it before the attacks. */
const alicesBrowser = new Browser();

async function loginPage(browser: Browser): Promise<Page> {
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    prompt: 'login', // the owner's browser has a session: show the sign-in form anyway
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  return asPage(await browser.get(url.href));
}

async function attempt(browser: Browser, email: string, password: string) {
  const page = await loginPage(browser);
  return browser.submit(page, 'form[action$="/login"]', { email, password });
}

before(async () => {
  server = await startServer({ LOGIN_RATE_LIMIT_PER_ACCOUNT: '3', LOGIN_RATE_LIMIT_PER_IP: '8' });
  await server.cli(['users', 'create', '--email', ALICE.email, '--password', ALICE.password]);
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
});
after(async () => server?.stop());

describe('password guessing', () => {
  test('an account under attack refuses new browsers, but its owner on a known browser still signs in', async () => {
    assert.match(asRedirect(await attempt(alicesBrowser, ALICE.email, ALICE.password)), /\?code=/);

    const attacker = new Browser();
    for (let i = 0; i < 3; i++) assert.equal(asPage(await attempt(attacker, ALICE.email, `guess ${i}`)).status, 401);
    const blocked = asPage(await attempt(attacker, ALICE.email, ALICE.password));
    assert.equal(blocked.status, 429, 'even the right password is not checked now');
    assert.match(blocked.doc.querySelector('[role=alert]')!.text, /Too many failed attempts/);
    assert.ok(Number(blocked.headers.get('retry-after')) > 0);

    // The owner is not locked out.
    assert.match(asRedirect(await attempt(alicesBrowser, ALICE.email, ALICE.password)), /\?code=/);
    // Another new browser is throttled like the attacker: the budget is the account's.
    assert.equal(asPage(await attempt(new Browser(), ALICE.email, ALICE.password)).status, 429);
  });

  test('an unknown address is throttled exactly like a known one (no enumeration)', async () => {
    const attacker = new Browser();
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(asPage(await attempt(attacker, 'nobody@example.com', `guess ${i}`)).status);
    assert.deepEqual(statuses, [401, 401, 401, 429]);
  });

  test('one IP guessing across many accounts is stopped by the per-IP budget', async () => {
    // Each address is tried once (below the per-account budget); the IP's budget of 8 runs out.
    const attacker = new Browser();
    const statuses: number[] = [];
    for (let i = 0; i < 9 && statuses.at(-1) !== 429; i++) statuses.push(asPage(await attempt(attacker, `x${i}@example.com`, 'guess')).status);
    assert.equal(statuses.at(-1), 429, `blocked within the IP budget: ${statuses.join(',')}`);
    assert.ok(statuses.length <= 9);
    // Alice's known browser, behind the same IP, is still not locked out by her bad neighbour.
    assert.match(asRedirect(await attempt(alicesBrowser, ALICE.email, ALICE.password)), /\?code=/);
  });
});

describe('second-factor guessing', () => {
  test('five wrong codes end the attempt; the password is needed again', async () => {
    const ipServer = await startServer();
    try {
      const created = (await ipServer.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
      const rp2 = await oidc.discovery(new URL(ipServer.issuer), 'rp', created.client_secret, undefined, insecure);
      await ipServer.cli(['users', 'create', '--email', 'bob@example.com', '--password', 'bob password 123']);
      const browser = new Browser();
      const login = asPage(await browser.get(`${ipServer.issuer}/account`));
      await browser.submit(login, 'form[action$="/login"]', { email: 'bob@example.com', password: 'bob password 123' });
      const setup = asPage(await browser.get(`${ipServer.issuer}/account/totp/setup`));
      const auth = new Authenticator(setup.doc.querySelector('[data-totp-secret]')!.text.trim());
      await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await auth.nextCode() });

      const attacker = new Browser();
      const outcome = await authorize(rp2, attacker, { email: 'bob@example.com', password: 'bob password 123' }, {}, ['totp']);
      let page = outcome.stoppedAt!;
      const statuses = [];
      for (let i = 0; i < 5; i++) {
        page = asPage(await attacker.submit(page, 'form[action$="/factor/totp"]', { code: String(100000 + i) }));
        statuses.push(page.status);
      }
      assert.deepEqual(statuses, [401, 401, 401, 401, 429]);
      // The pending state is gone: even a right code now needs the password first.
      const gone = asPage(await attacker.get(new URL(outcome.stoppedAt!.url).href));
      assert.equal(gone.status, 400);
    } finally {
      await ipServer.stop();
    }
  });
});
