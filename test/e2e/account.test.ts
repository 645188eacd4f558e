// The account page: reached through the hosted sign-in, and the recent-authentication gate.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Browser, asPage } from '../helpers/browser.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const USER = { email: 'dana@example.com', password: 'harbor lantern 123', name: 'Dana' };
let server: TestServer;

before(async () => {
  server = await startServer({ RECENT_AUTH_TTL: '2' });
  await server.cli(['users', 'create', '--email', USER.email, '--password', USER.password, '--name', USER.name, '--verified']);
});
after(async () => server?.stop());

export async function signIntoAccount(browser: Browser, issuer: string, user = USER) {
  const login = asPage(await browser.get(`${issuer}/account`));
  assert.ok(login.doc.querySelector('input[name=password]'), 'the hosted sign-in page is shown');
  return asPage(await browser.submit(login, 'form[action$="/login"]', { email: user.email, password: user.password }));
}

describe('account page', () => {
  test('without a session goes through the hosted sign-in and comes back', async () => {
    const browser = new Browser();
    const page = await signIntoAccount(browser, server.issuer);
    assert.equal(new URL(page.url).pathname, '/account');
    assert.equal(page.doc.querySelector('h1')?.text, 'Your account');
    assert.match(page.html, /dana@example\.com/);
    assert.match(page.html, /Verified/);
    const signOut = page.doc.querySelectorAll('a').find((a) => a.text.trim() === 'Sign out');
    assert.equal(signOut?.getAttribute('href'), '/session/end');
    // Signing out ends the session: the account page asks for a sign-in again.
    const confirm = asPage(await browser.get(new URL('/session/end', server.issuer).href));
    const done = asPage(await browser.submit(confirm, 'form', {}, { name: 'logout', value: 'yes' }));
    assert.match(done.html, /signed out/i);
    const again = asPage(await browser.get(`${server.issuer}/account`));
    assert.ok(again.doc.querySelector('input[name=password]'));
  });

  test('a forged callback state is refused', async () => {
    const page = asPage(await new Browser().get(`${server.issuer}/account/callback?state=forged`));
    assert.equal(page.status, 400);
  });

  test('re-authentication: stale sessions must enter the password again, wrong password refused', async () => {
    const browser = new Browser();
    await signIntoAccount(browser, server.issuer);
    await new Promise((r) => setTimeout(r, 3000)); // RECENT_AUTH_TTL=2
    const reauth = asPage(await browser.get(`${server.issuer}/account/reauth?return_to=/account`));
    const wrong = asPage(await browser.submit(reauth, 'form[action="/account/reauth"]', { password: 'nope nope nope' }));
    assert.equal(wrong.status, 401);
    const ok = asPage(await browser.submit(reauth, 'form[action="/account/reauth"]', { password: USER.password }));
    assert.equal(new URL(ok.url).pathname, '/account');
    // An open redirect through return_to is not possible.
    const evil = asPage(await browser.get(`${server.issuer}/account/reauth?return_to=https://evil.example/`));
    assert.equal(evil.doc.querySelector('input[name=return_to]')?.getAttribute('value'), '/account');
  });
});
