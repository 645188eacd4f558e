// The account console: sections at their own URLs behind one navigation (plain links, current
// section marked), the profile form (CSRF, validation, the `picture` claim), /account/security
// with the same forms as before, /account/apps with "Remove access" (the RP's refresh token
// dies), return_to honoured only when exactly registered ("Back to <client>", kept across
// sections and through sign-in), and deletion's recent authentication with the strongest factor.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { Browser, asPage, type Page } from '../helpers/browser.ts';
import { REDIRECT, authorize, createVerifiedUser, insecure, pageKind, type Credentials } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { Authenticator } from '../helpers/totp.ts';

const LOGOUT_URI = 'http://localhost:9/signed-out';
const SECTIONS = ['/account', '/account/email', '/account/security', '/account/sessions', '/account/history', '/account/apps', '/account/delete'];
let server: TestServer;
let rp: oidc.Configuration;
const createUser = (prefix: string) => createVerifiedUser(server, prefix);

async function signIn(user: Credentials, url = `${server.issuer}/account`): Promise<{ browser: Browser; page: Page }> {
  const browser = new Browser();
  const login = asPage(await browser.get(url));
  let page = asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password }));
  if (pageKind(page) === 'totp') page = asPage(await browser.submit(page, 'form[action$="/factor/totp"]', { code: await user.totp!() }));
  return { browser, page };
}

function navLinks(page: Page) {
  return page.doc.querySelectorAll('nav.account-nav a').map((a) => ({ href: a.getAttribute('href')!, current: a.getAttribute('aria-current') }));
}

function backLink(page: Page) {
  return page.doc.querySelectorAll('a').find((a) => /^\s*← Back to /.test(a.text) || a.text.includes('Back to Example App'));
}

before(async () => {
  server = await startServer({ RECENT_AUTH_TTL: '2' });
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--name', 'Example App', '--redirect-uri', REDIRECT, '--post-logout-redirect-uri', LOGOUT_URI])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
});
after(async () => server?.stop());

describe('account console', () => {
  test('every section is its own URL behind one navigation of plain links; the current one is marked', async () => {
    const user = await createUser('nav');
    const { browser, page } = await signIn(user);
    for (const [path, current] of [['/account', '/account'], ['/account/security', '/account/security'], ['/account/apps', '/account/apps'], ['/account/delete', '/account/delete']] as const) {
      const shown = path === '/account' ? page : asPage(await browser.get(`${server.issuer}${path}`));
      assert.equal(new URL(shown.url).pathname, path, `${path} is served at its own URL`);
      const links = navLinks(shown);
      assert.deepEqual(links.map((l) => l.href), SECTIONS, `${path}: the navigation links every section`);
      assert.deepEqual(links.filter((l) => l.current === 'page').map((l) => l.href), [current], `${path}: aria-current on its own link only`);
      assert.equal(shown.doc.querySelectorAll('nav.account-nav script, nav.account-nav button').length, 0, 'links, not scripts');
    }
  });

  test('/account/security has the security forms with their usual actions; /account keeps them too', async () => {
    const user = await createUser('sec');
    const { browser, page } = await signIn(user);
    const security = asPage(await browser.get(`${server.issuer}/account/security`));
    assert.equal(security.doc.querySelector('h1')?.text.trim(), 'Sign-in and security');
    assert.equal(security.doc.querySelector('a[href="/account/password"]')?.text.trim(), 'Change password');
    assert.ok(security.doc.querySelector('a[href="/account/totp/setup"]'), 'authenticator app set-up');
    assert.ok(security.doc.querySelector('[data-passkey-action=register][data-options-url="/account/passkeys/options"]'), 'add a passkey');
    assert.ok(page.doc.querySelector('a[href="/account/totp/setup"]'), '/account still has the summary');
  });

  test('profile: name and picture are saved with CSRF, validated, and reach the ID token', async () => {
    const user = await createUser('profile');
    const { browser, page } = await signIn(user);
    const form = 'form[action="/account/profile"]';
    const noCsrf = await browser.request(`${server.issuer}/account/profile`, { method: 'POST', body: new URLSearchParams({ name: 'Mallory', picture: '' }) });
    assert.equal(noCsrf.status, 403, 'no CSRF token, no change');

    const bad = asPage(await browser.submit(page, form, { name: 'Zoë', picture: 'javascript:alert(1)' }));
    assert.equal(bad.status, 400);
    assert.match(bad.doc.querySelector('#profile-picture-error')?.text ?? '', /https:\/\//);
    assert.equal(bad.doc.querySelector('#profile-name')?.getAttribute('value'), 'Zoë', 'what was typed is kept');

    const saved = asPage(await browser.submit(page, form, { name: 'Zoë Example', picture: 'https://img.example.com/z.png' }));
    assert.equal(new URL(saved.url).pathname, '/account');
    assert.match(saved.doc.querySelector('.notice')?.text ?? '', /Profile saved/);
    assert.equal(saved.doc.querySelector('#profile-name')?.getAttribute('value'), 'Zoë Example');

    const signed = await authorize(rp, browser, user, { scope: 'openid profile' });
    const claims = signed.tokens!.claims()!;
    assert.equal(claims.name, 'Zoë Example');
    assert.equal(claims.picture, 'https://img.example.com/z.png');
  });

  test('/account/apps lists the RP with its scopes; "Remove access" kills its refresh token', async () => {
    const user = await createUser('apps');
    const { browser } = await signIn(user);
    const signed = await authorize(rp, browser, user, { scope: 'openid email offline_access', prompt: 'consent' });
    const refreshToken = signed.tokens!.refresh_token!;
    assert.ok(refreshToken);

    const apps = asPage(await browser.get(`${server.issuer}/account/apps`));
    const item = apps.doc.querySelector('li[data-client-id="rp"]');
    assert.ok(item, 'the RP is listed');
    assert.match(item.text, /Example App/);
    assert.match(item.text, /Your email address/);
    assert.match(item.text, /Allowed since/);

    const removed = asPage(await browser.submit(apps, 'form[action="/account/apps/rp/remove"]'));
    assert.match(removed.doc.querySelector('.notice')?.text ?? '', /Access removed/);
    assert.equal(removed.doc.querySelector('li[data-client-id="rp"]'), null);
    await assert.rejects(oidc.refreshTokenGrant(rp, refreshToken), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
  });

  test('return_to: honoured only when exactly registered; "Back to <client>" stays across sections and sign-in', async () => {
    const user = await createUser('back');
    const query = (returnTo: string) => `?${new URLSearchParams({ client_id: 'rp', return_to: returnTo })}`;
    // Unauthenticated: the sign-in comes back to the console with the client kept.
    const { browser, page } = await signIn(user, `${server.issuer}/account${query(LOGOUT_URI)}`);
    assert.equal(new URL(page.url).pathname, '/account');
    const back = backLink(page);
    assert.equal(back?.getAttribute('href'), LOGOUT_URI);
    assert.match(back!.text, /Back to Example App/);
    for (const link of navLinks(page)) assert.equal(link.href, `${new URL(link.href, server.issuer).pathname}${query(LOGOUT_URI)}`, 'every section link keeps it');
    for (const path of ['/account/security', '/account/apps', '/account/delete']) {
      const section = asPage(await browser.get(`${server.issuer}${path}${query(REDIRECT)}`));
      assert.equal(backLink(section)?.getAttribute('href'), REDIRECT, `${path} shows Back to the client`);
    }
    // Nothing but an exact registered URI: prefixes, look-alikes and other origins are ignored.
    for (const evil of ['https://evil.example/', `${REDIRECT}/../../evil`, `${REDIRECT}?next=https://evil.example`, `${REDIRECT}#x`, 'http://localhost:9/c', 'HTTP://LOCALHOST:9/cb', `//evil.example/cb`]) {
      const shown = asPage(await browser.get(`${server.issuer}/account${query(evil)}`));
      assert.equal(shown.status, 200);
      assert.equal(backLink(shown), undefined, `no back link for ${evil}`);
      assert.ok(!shown.html.includes('evil.example'), `${evil} appears nowhere on the page`);
    }
    // Another client's URI is not this client's.
    const other = asPage(await browser.get(`${server.issuer}/account?${new URLSearchParams({ client_id: 'latchkey-account', return_to: REDIRECT })}`));
    assert.equal(backLink(other), undefined);
  });

  test('deletion needs a recent proof of the strongest factor: with an authenticator app, the password alone is not enough', async () => {
    const user = await createUser('strong');
    const { browser } = await signIn(user);
    const setup = asPage(await browser.get(`${server.issuer}/account/totp/setup`));
    const ready = setup.doc.querySelector('form[action="/account/reauth"] input[name=password]') ? asPage(await browser.submit(setup, 'form[action="/account/reauth"]', { password: user.password })) : setup;
    const authenticator = new Authenticator(ready.doc.querySelector('[data-totp-secret]')!.text.trim());
    asPage(await browser.submit(ready, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() }));
    await new Promise((r) => setTimeout(r, 3000)); // RECENT_AUTH_TTL=2: nothing is recent any more

    const reauth = asPage(await browser.get(`${server.issuer}/account/delete`));
    assert.equal(new URL(reauth.url).pathname, '/account/reauth');
    assert.equal(new URL(reauth.url).searchParams.get('factor'), 'totp');
    assert.equal(reauth.doc.querySelector('input[name=password]'), null, 'the password is not offered');
    // The password posted anyway proves the password, not the app: deletion still asks for the code.
    const csrf = reauth.doc.querySelector('input[name=_csrf]')!.getAttribute('value')!;
    const withPassword = asPage(
      await browser.follow(`${server.issuer}/account/reauth`, { method: 'POST', body: new URLSearchParams({ _csrf: csrf, password: user.password, return_to: '/account/delete' }) }),
    );
    assert.equal(new URL(withPassword.url).pathname, '/account/reauth', 'back to confirming with the app');
    assert.equal(withPassword.doc.querySelector('form[action="/account/delete"]'), null);

    const confirm = asPage(await browser.submit(withPassword, 'form[action="/account/reauth"]', { code: await authenticator.nextCode() }));
    assert.equal(new URL(confirm.url).pathname, '/account/delete');
    assert.ok(confirm.doc.querySelector('form[action="/account/delete"] input[name=confirm]'), 'the confirmation is shown');
  });
});
