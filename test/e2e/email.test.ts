// Email end to end: the real server process sending real mail to an SMTP sink on loopback,
// openid-client as the relying party, and cookie-keeping browsers clicking the links that
// arrive. Covers verification, the require_verified_email client policy, password reset,
// magic-link sign-in, email change, and delivery after an SMTP outage.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as oidc from 'openid-client';
import * as jose from 'jose';
import { loopbackFetchEnv } from '../helpers/allow-loopback-fetch.ts';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { freePort, startServer, type TestServer } from '../helpers/server.ts';
import { REDIRECT, insecure, startAuthorization } from '../helpers/rp.ts';
import { SmtpSink, type ReceivedMail } from '../helpers/smtp-sink.ts';

const FAST_MAIL = { MAIL_POLL_INTERVAL: '1', MAIL_RETRY_BASE: '1', MAIL_RETRY_MAX_DELAY: '2' };

let sink: SmtpSink;
let server: TestServer;
let app: oidc.Configuration;
let strict: oidc.Configuration;
let withBackchannel: oidc.Configuration;
/** An RP's back-channel logout endpoint: the logout tokens it received. */
let backchannel: { server: http.Server; origin: string; tokens: string[] };

async function createRp(srv: TestServer, id: string, extra: string[] = []): Promise<oidc.Configuration> {
  const created = (await srv.cli(['clients', 'create', '--id', id, '--first-party', '--redirect-uri', REDIRECT, ...extra])) as { client_secret: string };
  return oidc.discovery(new URL(srv.issuer), id, created.client_secret, undefined, insecure);
}

async function createUser(srv: TestServer, email: string, password: string, verified = true) {
  await srv.cli(['users', 'create', '--email', email, '--password', password, '--name', email.split('@')[0]!, ...(verified ? ['--verified'] : [])]);
}

async function exchange(config: oidc.Configuration, step: Page | { redirect: string }, started: { verifier: string; state: string }) {
  return oidc.authorizationCodeGrant(config, new URL(asRedirect(step)), { pkceCodeVerifier: started.verifier, expectedState: started.state });
}

async function passwordSignIn(browser: Browser, config: oidc.Configuration, email: string, password: string, params: Record<string, string> = {}) {
  const started = await startAuthorization(browser, config, params);
  const step = isPage(started.step) && started.step.doc.querySelector('form[action$="/login"]')
    ? await browser.submit(started.step, 'form[action$="/login"]', { email, password })
    : started.step;
  return { ...started, step };
}

/** The one link in `mail` that starts with `prefix` (absolute, on the issuer). */
function linkIn(mail: ReceivedMail, prefix: string): string {
  const link = mail.links.find((l) => l.startsWith(prefix));
  assert.ok(link, `a link starting with ${prefix} in:\n${mail.text}`);
  assert.ok(mail.html.includes(link.replaceAll('&', '&amp;')) || mail.html.includes(link), 'the HTML part carries the same link');
  return link;
}

function heading(page: Page): string {
  return page.doc.querySelector('h1')?.text.trim() ?? '';
}

/** The page body without what legitimately differs between two requests. */
function comparable(page: Page, email: string): string {
  return page.doc.querySelector('main')!.toString().replaceAll(email, '<email>');
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
  // The server may deliver back-channel logout tokens to this one loopback endpoint.
  server = await startServer({ SMTP_URL: `smtp://127.0.0.1:${sink.port}`, ...FAST_MAIL, ...loopbackFetchEnv(backchannel.origin) });
  app = await createRp(server, 'app', ['--grant-type', 'authorization_code', '--grant-type', 'refresh_token']);
  strict = await createRp(server, 'strict', ['--require-verified-email']);
  withBackchannel = await createRp(server, 'bc-app', ['--backchannel-logout-uri', `${backchannel.origin}/logout`]);
});

after(async () => {
  await server?.stop();
  await sink?.stop();
  backchannel?.server.closeAllConnections();
  await new Promise((resolve) => backchannel?.server.close(resolve) ?? resolve(undefined));
});

describe('email verification', () => {
  test('sign-up sends a link that creates the account, verified, in the browser that signed up', async () => {
    const browser = new Browser();
    const email = 'newbie@example.com';
    const started = await startAuthorization(browser, app);
    const signup = asPage(await browser.get(new URL(`${asPage(started.step).url}/signup`).href));
    const sent = asPage(await browser.submit(signup, 'form[action$="/signup"]', { name: 'Newbie', email, password: 'a long enough password' }));
    assert.equal(heading(sent), 'Check your email', 'no account and no sign-in before the mailbox is proven');

    const mail = await sink.next(email, /Finish creating your account/);
    assert.match(mail.from, /^no-reply@localhost$/);
    const link = linkIn(mail, `${server.issuer}/interaction/`);
    assert.match(new URL(link).searchParams.get('token')!, /^[A-Za-z0-9_-]{43}$/, '32 random bytes, base64url');

    // Opening the link (as a mail scanner would) changes nothing; the button does.
    const confirm = asPage(await browser.get(link));
    assert.equal(heading(confirm), 'Create your account');
    assert.equal(heading(asPage(await browser.get(link))), 'Create your account', 'a GET does not use the link up');
    const done = await browser.submit(confirm, 'form[action$="/magic-link/verify"]');
    const tokens = await exchange(app, done, started);
    const claims = tokens.claims()!;
    assert.equal(claims.email, email);
    assert.equal(claims.name, 'Newbie');
    assert.equal(claims.email_verified, true);
    const info = await oidc.fetchUserInfo(app, tokens.access_token, claims.sub);
    assert.equal(info.email_verified, true);

    // The password typed at sign-up is the account's.
    const again = await passwordSignIn(new Browser(), app, email, 'a long enough password');
    assert.equal((await exchange(app, again.step, again)).claims()!.sub, claims.sub);
    // The link worked once.
    const replay = asPage(await browser.submit(confirm, 'form[action$="/magic-link/verify"]'));
    assert.ok(replay.status >= 400, 'a used sign-up link is refused');
  });

  test('an unverified account verifies by the mailed link; the link works once', async () => {
    const email = 'later@example.com';
    await createUser(server, email, 'eventual secret 12', false);
    const browser = new Browser();
    const login = asPage(await browser.get(`${server.issuer}/account`));
    const account = asPage(await browser.submit(login, 'form[action$="/login"]', { email, password: 'eventual secret 12' }));
    asPage(await browser.submit(account, 'form[action="/verify-email/resend"]'));
    const mail = await sink.next(email, /Confirm your email address/);
    const link = linkIn(mail, `${server.issuer}/verify-email?token=`);

    const mailClient = new Browser('mail-client');
    const confirm = asPage(await mailClient.get(link));
    assert.equal(heading(confirm), 'Confirm your email address');
    assert.equal(heading(asPage(await mailClient.get(link))), 'Confirm your email address', 'a GET does not use the link up');
    const verified = asPage(await mailClient.submit(confirm, 'form[action="/verify-email"]'));
    assert.equal(verified.status, 200);
    assert.equal(heading(verified), 'Your email address is verified');

    const reused = asPage(await mailClient.get(link));
    assert.equal(reused.status, 200);
    assert.equal(heading(reused), 'Your email address is already verified');
    const replay = asPage(await mailClient.submit(confirm, 'form[action="/verify-email"]'));
    assert.equal(replay.status, 410);
    assert.match(heading(replay), /already used/);
  });

  test('a client requiring a verified email gets no code until the user verifies', async () => {
    const email = 'unverified@example.com';
    const password = 'unconfirmed secret 1';
    await createUser(server, email, password, false);
    const browser = new Browser();
    const started = await passwordSignIn(browser, strict, email, password);
    const page = asPage(started.step);
    assert.equal(heading(page), 'Verify your email', 'no redirect to the client: a page instead');
    assert.ok(page.doc.querySelector('form[action$="/verify-email/continue"]'));

    // Continuing before verifying changes nothing.
    const early = asPage(await browser.submit(page, 'form[action$="/verify-email/continue"]'));
    assert.equal(early.status, 409);
    assert.match(early.html, /not verified yet/);

    // The account page and sign-out stay reachable while unverified.
    const account = asPage(await browser.get(`${server.issuer}/account`));
    assert.equal(new URL(account.url).pathname, '/account');
    assert.match(account.html, /Not verified/);

    // Resend from the page: back to the same step, and a mail arrives.
    const resent = asPage(await browser.submit(page, 'form[action="/verify-email/resend"]'));
    assert.equal(heading(resent), 'Verify your email');
    assert.match(resent.html, /We sent a new verification link/);
    const mail = await sink.next(email, /Confirm your email address/);

    // Verified on another device, then continue here.
    const phone = new Browser('phone');
    const confirm = asPage(await phone.get(linkIn(mail, `${server.issuer}/verify-email?token=`)));
    asPage(await phone.submit(confirm, 'form[action="/verify-email"]'));
    const done = await browser.submit(resent, 'form[action$="/verify-email/continue"]');
    const tokens = await exchange(strict, done, started);
    assert.equal(tokens.claims()!.email_verified, true);
  });
});

describe('password reset', () => {
  const email = 'forgetful@example.com';
  let resetLink: string;

  test('known and unknown addresses get the same answer, in the same time; only the known one gets mail', async () => {
    await createUser(server, email, 'the old password 1');
    const browser = new Browser();
    const form = asPage(await browser.get(`${server.issuer}/forgot-password`));
    const ask = async (address: string) => {
      const started = performance.now();
      const page = asPage(await browser.submit(form, 'form[action="/forgot-password"]', { email: address }));
      return { page, ms: performance.now() - started };
    };
    const known = await ask(email);
    const unknown = await ask('nobody@example.com');
    assert.equal(known.page.status, 200);
    assert.equal(unknown.page.status, 200);
    assert.equal(heading(known.page), 'Check your email');
    assert.equal(comparable(known.page, email), comparable(unknown.page, 'nobody@example.com'), 'identical pages');
    // Both answers wait for the same floor, whatever the work behind them.
    assert.ok(known.ms >= 240 && unknown.ms >= 240, `both padded (${known.ms} ms, ${unknown.ms} ms)`);

    const mail = await sink.next(email, /Reset your password/);
    resetLink = linkIn(mail, `${server.issuer}/reset-password?token=`);
    assert.match(mail.text, /expires in 30 minutes/);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sink.to('nobody@example.com').length, 0, 'no mail for an unknown address');
    // The token is a bearer secret: it appears in no log line (the dev transport is off here).
    assert.ok(!server.logs.join('').includes(new URL(resetLink).searchParams.get('token')!));
  });

  test('the link sets a new password (sign-up rules) once; a reused link is refused', async () => {
    const browser = new Browser();
    const form = asPage(await browser.get(resetLink));
    assert.equal(heading(form), 'Choose a new password');
    const weak = asPage(await browser.submit(form, 'form[action="/reset-password"]', { password: 'short' }));
    assert.equal(weak.status, 400);
    assert.match(weak.html, /at least 8 characters/);
    const done = asPage(await browser.submit(weak, 'form[action="/reset-password"]', { password: 'the new password 2' }));
    assert.equal(heading(done), 'Your password was changed');
    await sink.next(email, /Your password was changed/);

    const reusedGet = asPage(await browser.get(resetLink));
    assert.equal(reusedGet.status, 410);
    assert.match(heading(reusedGet), /already used/);
    const reusedPost = asPage(await browser.submit(form, 'form[action="/reset-password"]', { password: 'an attacker password' }));
    assert.equal(reusedPost.status, 410);

    const old = await passwordSignIn(new Browser(), app, email, 'the old password 1');
    assert.equal(asPage(old.step).status, 401, 'the old password no longer works');
    const fresh = await passwordSignIn(new Browser(), app, email, 'the new password 2');
    assert.ok((await exchange(app, fresh.step, fresh)).id_token);
  });

  test('after a reset, every session and refresh token of the user is dead, and back-channel RPs are told', async () => {
    const victim = 'session-holder@example.com';
    await createUser(server, victim, 'keeping secret 1');
    const browser = new Browser();
    const signedIn = await passwordSignIn(browser, app, victim, 'keeping secret 1', { scope: 'openid email offline_access', prompt: 'consent' });
    const tokens = await exchange(app, signedIn.step, signedIn);
    assert.ok(tokens.refresh_token, 'a refresh token to kill');
    const rotated = await oidc.refreshTokenGrant(app, tokens.refresh_token!);
    assert.equal((await oidc.tokenIntrospection(app, rotated.access_token)).active, true);
    // The same browser session also signed in to an RP with a back-channel logout endpoint.
    const bcSignIn = await startAuthorization(browser, withBackchannel);
    const bcClaims = (await exchange(withBackchannel, bcSignIn.step, bcSignIn)).claims()!;
    assert.ok(bcClaims.sid);
    const logoutsBefore = backchannel.tokens.length;

    const other = new Browser();
    const form = asPage(await other.get(`${server.issuer}/forgot-password`));
    asPage(await other.submit(form, 'form[action="/forgot-password"]', { email: victim }));
    const link = linkIn(await sink.next(victim, /Reset your password/), `${server.issuer}/reset-password?token=`);
    const reset = asPage(await other.get(link));
    assert.equal(heading(asPage(await other.submit(reset, 'form[action="/reset-password"]', { password: 'a fresh secret 2' }))), 'Your password was changed');

    await assert.rejects(oidc.refreshTokenGrant(app, rotated.refresh_token!), (err: oidc.ResponseBodyError) => err.error === 'invalid_grant');
    assert.equal((await oidc.tokenIntrospection(app, rotated.access_token)).active, false, 'access tokens are dead too');
    const silent = await startAuthorization(browser, app, { prompt: 'none' });
    assert.equal(new URL(asRedirect(silent.step)).searchParams.get('error'), 'login_required', 'the browser session is gone');
    const account = asPage(await browser.get(`${server.issuer}/account`));
    assert.ok(account.doc.querySelector('input[name=password]'), 'the account page asks for a sign-in again');

    // The RP that registered for it was told, with a logout token for that session.
    const delivered = backchannel.tokens.slice(logoutsBefore);
    assert.equal(delivered.length, 1, 'one logout token: one session, one client with a back-channel URI');
    const jwks = jose.createRemoteJWKSet(new URL(withBackchannel.serverMetadata().jwks_uri!));
    const { payload } = await jose.jwtVerify(delivered[0]!, jwks, { issuer: server.issuer, audience: 'bc-app', typ: 'logout+jwt' });
    assert.equal(payload.sub, bcClaims.sub);
    assert.equal(payload.sid, bcClaims.sid);
    assert.deepEqual(payload.events, { 'http://schemas.openid.net/event/backchannel-logout': {} });
  });
});

describe('magic-link sign-in', () => {
  const email = 'linky@example.com';

  test('completes the sign-in only in the browser that asked for it', async () => {
    await createUser(server, email, 'chain secret 1', false);
    const browser = new Browser();
    const started = await startAuthorization(browser, app);
    const login = asPage(started.step);
    assert.ok(login.doc.querySelector('a[href^="/forgot-password"]'), 'the sign-in page offers "Forgot password?"');
    const sent = asPage(await browser.submitWith(login, 'button[formaction$="/magic-link"]', { email }));
    assert.equal(heading(sent), 'Check your email');

    // An unknown address gets the same answer (and no mail).
    const unknownBrowser = new Browser();
    const unknownLogin = asPage((await startAuthorization(unknownBrowser, app)).step);
    const unknown = asPage(await unknownBrowser.submitWith(unknownLogin, 'button[formaction$="/magic-link"]', { email: 'ghost@example.com' }));
    assert.equal(comparable(unknown, 'ghost@example.com').replace(/interaction\/[^/"]+/g, 'interaction/<uid>'), comparable(sent, email).replace(/interaction\/[^/"]+/g, 'interaction/<uid>'));

    const mail = await sink.next(email, /Your sign-in link/);
    const link = linkIn(mail, `${server.issuer}/interaction/`);
    assert.match(new URL(link).pathname, /^\/interaction\/[^/]+\/magic-link\/verify$/);

    // Another browser (a forwarded link, or an attacker's planted one): refused, link not spent.
    const elsewhere = asPage(await new Browser('elsewhere').get(link));
    assert.equal(elsewhere.status, 403);
    assert.match(heading(elsewhere), /another browser/);
    assert.ok(elsewhere.doc.querySelector('a[href="/account"]'), 'offers to sign in on that browser instead');

    const confirm = asPage(await browser.get(link));
    assert.equal(heading(confirm), 'Sign in');
    const done = await browser.submit(confirm, 'form[action$="/magic-link/verify"]');
    const tokens = await exchange(app, done, started);
    const claims = tokens.claims()!;
    assert.equal(claims.email, email);
    assert.deepEqual(claims.amr, ['email']);
    assert.equal(claims.acr, 'urn:latchkey:acr:pwd', 'one factor');
    assert.equal(claims.email_verified, true, 'opening the link proved the mailbox');

    const reused = asPage(await browser.get(link));
    assert.equal(reused.status, 410);
    assert.equal(sink.to('ghost@example.com').length, 0);
  });
});

describe('email change', () => {
  test('changes the address only when the link sent to the new address is used', async () => {
    const oldEmail = 'mover@example.com';
    const newEmail = 'moved@example.com';
    const password = 'relocating secret 1';
    await createUser(server, oldEmail, password);
    await createUser(server, 'taken@example.com', 'occupied secret 1');
    const browser = new Browser();
    const login = asPage(await browser.get(`${server.issuer}/account`));
    const account = asPage(await browser.submit(login, 'form[action$="/login"]', { email: oldEmail, password }));
    assert.ok(account.doc.querySelector('a[href="/account/email"]'), 'the account page links to the change');

    const form = asPage(await browser.get(`${server.issuer}/account/email`));
    // A taken address answers like a free one (no enumeration); its owner is told instead.
    const duplicate = asPage(await browser.submit(form, 'form[action="/account/email"]', { email: 'TAKEN@example.com' }));
    assert.equal(new URL(duplicate.url).pathname, '/account');
    assert.match(duplicate.html, /We sent a confirmation link to the new address/);
    await sink.next('taken@example.com', /Someone tried to use your email address/);

    const requested = asPage(await browser.submit(form, 'form[action="/account/email"]', { email: newEmail }));
    assert.equal(new URL(requested.url).pathname, '/account');
    assert.match(requested.html, /We sent a confirmation link to the new address/);
    assert.match(requested.html, /Waiting for confirmation/);

    const notice = await sink.next(oldEmail, /being changed/);
    assert.ok(linkIn(notice, `${server.issuer}/account/email/report?token=`), 'the old address can report the change');
    const confirmMail = await sink.next(newEmail, /Confirm your new email address/);
    const link = linkIn(confirmMail, `${server.issuer}/account/email/confirm?token=`);

    const emails = async () => ((await server.cli(['users', 'list'])) as { email: string; email_verified: boolean }[]).map((u) => u.email);
    assert.ok((await emails()).includes(oldEmail), 'unchanged until the link is used');
    const mailbox = new Browser('new-mailbox');
    const confirm = asPage(await mailbox.get(link));
    assert.ok((await emails()).includes(oldEmail), 'opening the link changes nothing by itself');
    const changed = asPage(await mailbox.submit(confirm, 'form[action="/account/email/confirm"]'));
    assert.equal(heading(changed), 'Your email address was changed');
    const users = (await server.cli(['users', 'list'])) as { email: string; email_verified: boolean }[];
    assert.ok(!users.some((u) => u.email === oldEmail));
    assert.equal(users.find((u) => u.email === newEmail)?.email_verified, true);

    const signedIn = await passwordSignIn(new Browser(), app, newEmail, password);
    assert.equal((await exchange(app, signedIn.step, signedIn)).claims()!.email, newEmail);
    assert.equal(asPage(await new Browser().get(link)).status, 410, 'the link works once');
  });
});

describe('mail delivery', () => {
  let downSink: SmtpSink;
  let downServer: TestServer;

  before(async () => {
    // Nothing listens on this port yet: SMTP is down when the request is made.
    downSink = new SmtpSink();
    downSink.port = await freePort();
    downServer = await startServer({ SMTP_URL: `smtp://127.0.0.1:${downSink.port}`, ...FAST_MAIL, RESET_PASSWORD_TTL: '3', UNVERIFIED_TTL: '1' });
  });
  after(async () => {
    await downServer?.stop();
    await downSink?.stop();
  });

  test('with SMTP down the request still succeeds, and the mail is delivered once it is back', async () => {
    await createUser(downServer, 'patient@example.com', 'waiting secret 1');
    const browser = new Browser();
    const form = asPage(await browser.get(`${downServer.issuer}/forgot-password`));
    const answered = asPage(await browser.submit(form, 'form[action="/forgot-password"]', { email: 'patient@example.com' }));
    assert.equal(answered.status, 200);
    assert.equal(heading(answered), 'Check your email');

    const deadline = Date.now() + 10_000;
    while (!downServer.logs.join('').includes('"event":"mail.retry"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.ok(downServer.logs.join('').includes('"event":"mail.retry"'), 'the failed attempt is logged and scheduled for retry');

    await downSink.start();
    const job = (await downServer.cli(['jobs', 'run', 'mail-outbox'])) as { ran: boolean };
    assert.equal(job.ran, true, 'the outbox can also be run on demand');
    const mail = await downSink.next('patient@example.com', /Reset your password/);
    const link = linkIn(mail, `${downServer.issuer}/reset-password?token=`);
    assert.equal(downSink.to('patient@example.com').length, 1, 'delivered once');

    // RESET_PASSWORD_TTL=3 here: by now the link has expired.
    await new Promise((r) => setTimeout(r, 3200));
    const expired = asPage(await browser.get(link));
    assert.equal(expired.status, 410);
    assert.match(heading(expired), /expired/);
    assert.ok(expired.doc.querySelector('a[href="/forgot-password"]'), 'offers a new link');
  });

  test('cleanup-unverified removes accounts left unverified past UNVERIFIED_TTL', async () => {
    await createUser(downServer, 'stale@example.com', 'dusty secret 1', false);
    await createUser(downServer, 'fresh@example.com', 'brand-new secret 1', true);
    await new Promise((r) => setTimeout(r, 1500));
    const result = (await downServer.cli(['jobs', 'run', 'cleanup-unverified'])) as { ran: boolean; result: { removedUsers: number } };
    assert.equal(result.ran, true);
    assert.ok(result.result.removedUsers >= 1);
    const emails = ((await downServer.cli(['users', 'list'])) as { email: string }[]).map((u) => u.email);
    assert.ok(!emails.includes('stale@example.com'));
    assert.ok(emails.includes('fresh@example.com'));
  });
});
