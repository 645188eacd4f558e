// Enterprise SSO, the rest of issue 10: IdP-initiated landings (--allow-idp-initiated), linking
// an existing local account only after its owner signs in locally, encrypted assertions, step-up
// by local factors or by the IdP (--step-up), and the SAML jobs (state purge, metadata refresh,
// expiring certificates). Responses are written and signed here (so each check can be hit with a
// genuinely signed message), and SimpleSAMLphp covers the same paths as an independent IdP.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { REDIRECT, insecure, startAuthorization } from '../helpers/rp.ts';
import { freePort, startServer, type TestServer } from '../helpers/server.ts';
import { Authenticator } from '../helpers/totp.ts';
import { generateSigningCredentials, skipWithoutSimpleSamlPhp, startSamlIdp, walkIdpLogin, type SamlIdp, type SigningCredentials } from '../helpers/saml-idp.ts';
import * as attacks from '../helpers/saml-attacks.ts';
import { MFA_CLASS, audits, encryptAssertion, expectRejected, idpMetadata, idpResponse, postAcs, readAuthnRequest, rejectionReason, startSso, type ResponseSpec } from '../helpers/saml-sp.ts';

const ACME = 'https://idp.acme.test/saml/metadata';
const CIPHER = 'https://idp.cipher.test/saml/metadata';
const STEP = 'https://idp.step.test/saml/metadata';

let server: TestServer;
let rp: oidc.Configuration;
let idpKey: SigningCredentials;
let otherKey: SigningCredentials;
let tmp: string;
let metadataServer: http.Server;
let metadataOrigin: string;
/** What the metadata server answers at /idp.xml (status, body). */
let served: { status: number; body: string };

const response = (spec: Omit<ResponseSpec, 'issuer' | 'connection'> & Partial<ResponseSpec>, key = idpKey) => idpResponse(server, { issuer: ACME, connection: 'acme', ...spec }, key);

async function finish(s: { started: { verifier: string; state: string } }, step: Page | { redirect: string }) {
  const callback = new URL(asRedirect(step));
  assert.equal(callback.searchParams.get('error'), null, `no error at the RP: ${callback}`);
  return oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: s.started.verifier, expectedState: s.started.state });
}

/**
 * Runs a job through the CLI: its result, and the events it logged (JSON lines on the CLI's
 * stderr; on the embedded database the CLI hands the command to the server, which logs them).
 */
async function runJob(name: string): Promise<{ result: Record<string, number>; events: Record<string, unknown>[] }> {
  const logged = server.logs.length;
  const r = await server.cliRaw(['jobs', 'run', name, '--json']);
  assert.equal(r.code, 0, r.stderr);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const events = `${r.stderr}\n${server.logs.slice(logged).join('')}`.split('\n').flatMap((line) => {
    try {
      const e = JSON.parse(line) as Record<string, unknown>;
      return typeof e.event === 'string' ? [e] : [];
    } catch {
      return [];
    }
  });
  return { result: (JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as { result: Record<string, number> }).result, events };
}

async function withDb<T>(t: { skip(reason: string): void }, fn: (client: pg.Client) => Promise<T>): Promise<T | undefined> {
  if (!server.env.DATABASE_URL) {
    t.skip('needs PostgreSQL (DATABASE_URL) to change rows beside the running server');
    return undefined;
  }
  const client = new pg.Client({ connectionString: server.env.DATABASE_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-saml-more-'));
  [idpKey, otherKey] = await Promise.all([generateSigningCredentials('Acme IdP'), generateSigningCredentials('Other IdP')]);
  served = { status: 200, body: idpMetadata('https://idp.fetched.test/metadata', 'https://idp.fetched.test/sso', idpKey.certificatePem) };
  metadataServer = http.createServer((_req, res) => {
    res.writeHead(served.status, { 'content-type': 'application/samlmetadata+xml' });
    res.end(served.body);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => metadataServer.listen(port, '127.0.0.1', resolve));
  metadataOrigin = `http://127.0.0.1:${port}`;
  server = await startServer({ OUTBOUND_ALLOW_ORIGINS: metadataOrigin });
  const created = (await server.cli(['clients', 'create', '--id', 'app', '--first-party', '--redirect-uri', REDIRECT, '--scope', 'openid email profile roles'])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'app', created.client_secret, undefined, insecure);
  fs.writeFileSync(path.join(tmp, 'acme.xml'), idpMetadata(ACME, 'https://idp.acme.test/sso', idpKey.certificatePem));
  fs.writeFileSync(path.join(tmp, 'cipher.xml'), idpMetadata(CIPHER, 'https://idp.cipher.test/sso', idpKey.certificatePem));
  fs.writeFileSync(path.join(tmp, 'step.xml'), idpMetadata(STEP, 'https://idp.step.test/sso', idpKey.certificatePem));
  await server.cli(['saml', 'add', '--name', 'acme', '--metadata', path.join(tmp, 'acme.xml'), '--domains', 'acme.test', '--allow-idp-initiated', '--map', writeMap()]);
  await server.cli(['saml', 'add', '--name', 'sso', '--metadata', path.join(tmp, 'acme.xml'), '--domains', 'sso.test', '--sso-only']);
  await server.cli(['saml', 'add', '--name', 'cipher', '--metadata', path.join(tmp, 'cipher.xml'), '--domains', 'cipher.test', '--encrypted-assertions']);
  await server.cli(['saml', 'add', '--name', 'step', '--metadata', path.join(tmp, 'step.xml'), '--domains', 'step.test', '--step-up', 'idp', '--acr', `${MFA_CLASS}=mfa`]);
});

after(async () => {
  await server?.stop();
  await new Promise((r) => metadataServer?.close(r));
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('IdP-initiated sign-in (--allow-idp-initiated)', () => {
  test('an unsolicited response lands once on the account page (no RP, RelayState ignored); replay refused', async () => {
    const xml = response({ nameId: 'ida@acme.test', attributes: { displayName: ['Ida Acme'] } });
    const browser = new Browser();
    const page = asPage(await postAcs(server, browser, xml, 'https://evil.example/next', 'acme'));
    assert.equal(page.status, 200);
    assert.equal(new URL(page.url).pathname, '/account', `landed on the account page, not ${page.url}`);
    assert.match(page.doc.querySelector('main')!.text, /ida@acme\.test/);
    const success = audits(server, 'login.success').at(-1)!;
    assert.equal(success.data.connection, 'acme');
    assert.equal(audits(server, 'user.created').at(-1)!.user_id, success.user_id);

    const before = audits(server, 'saml.rejected').length;
    await expectRejected(server, await postAcs(server, new Browser(), xml, undefined, 'acme'), before, 'replay');
  });

  test('a connection without the flag refuses it', async () => {
    await server.cli(['saml', 'add', '--name', 'strict', '--metadata', path.join(tmp, 'acme.xml'), '--domains', 'strict.test']);
    const before = audits(server, 'saml.rejected').length;
    const xml = idpResponse(server, { issuer: ACME, connection: 'strict', nameId: 'sam@strict.test' }, idpKey);
    await expectRejected(server, await postAcs(server, new Browser(), xml, undefined, 'strict'), before, 'unsolicited');
  });

  test('the landing is one-time and belongs to the sign-in the ACS started', async () => {
    const browser = new Browser();
    const body = new URLSearchParams({ SAMLResponse: attacks.encodeResponse(response({ nameId: 'ida@acme.test' })) });
    const res = await browser.request(`${server.issuer}/saml/acme/acs`, { method: 'POST', body });
    assert.equal(res.status, 303);
    const auth = new URL(res.headers.get('location')!);
    assert.equal(auth.pathname, '/auth');
    assert.equal(auth.searchParams.get('client_id'), 'latchkey-account');
    assert.equal(auth.searchParams.get('prompt'), 'login');
    // A copy of this browser's cookies (an attacker who got them, or the same tab twice).
    const copy = new Browser();
    for (const c of await browser.jar.getCookies(`${server.issuer}/interaction/x`)) await copy.jar.setCookie(c.toString(), `${server.issuer}/interaction/x`);
    for (const c of await browser.jar.getCookies(`${server.issuer}/account`)) await copy.jar.setCookie(c.toString(), `${server.issuer}/account`);
    const landed = asPage(await browser.get(auth.href));
    assert.equal(new URL(landed.url).pathname, '/account');
    const before = audits(server, 'saml.rejected').length;
    await expectRejected(server, await copy.get(auth.href), before, 'landing_unavailable');
    // Another sign-in (an RP's) in a browser holding the landing cookie does not consume it.
    const other = new Browser();
    await other.request(`${server.issuer}/saml/acme/acs`, { method: 'POST', body: new URLSearchParams({ SAMLResponse: attacks.encodeResponse(response({ nameId: 'ida@acme.test' })) }) });
    const rpStart = await startAuthorization(other, rp);
    assert.ok(isPage(rpStart.step) && rpStart.step.doc.querySelector('form[action$="/login"]'), 'the RP gets the sign-in page, not the landing');
  });
});

describe('linking an existing local account', () => {
  let bob: { sub: string; authenticator: Authenticator };

  before(async () => {
    // Bob has a local account with a password and an authenticator app (enrolled on his account page).
    await server.cli(['users', 'create', '--email', 'bob@acme.test', '--password', 'bob local password', '--verified']);
    const browser = new Browser();
    const login = asPage(await browser.get(`${server.issuer}/account`));
    const account = asPage(await browser.submit(login, 'form[action$="/login"]', { email: 'bob@acme.test', password: 'bob local password' }));
    assert.equal(new URL(account.url).pathname, '/account', 'a password still signs Bob in locally (acme is not --sso-only)');
    const setup = asPage(await browser.get(`${server.issuer}/account/totp/setup`));
    const authenticator = new Authenticator(setup.doc.querySelector('[data-totp-secret]')!.text.trim());
    await browser.submit(setup, 'form[action="/account/totp/setup"]', { code: await authenticator.nextCode() });
    const users = (await server.cli(['users', 'list'])) as { id: string; email: string }[];
    bob = { sub: users.find((u) => u.email === 'bob@acme.test')!.id, authenticator };
  });

  async function offer(email: string, nameId: string, browser = new Browser()) {
    const connection = email.endsWith('@sso.test') ? 'sso' : 'acme';
    const s = await startSso(browser, rp, email);
    const xml = idpResponse(server, { issuer: ACME, connection, inResponseTo: s.requestId, nameId, attributes: { mail: [email], groups: ['Engineering'] } }, idpKey);
    return { s, page: asPage(await postAcs(server, browser, xml, s.relayState, connection)) };
  }

  test('the sign-in says so and offers "Sign in to link"; a wrong password links nothing', async () => {
    const { s, page } = await offer('bob@acme.test', 'bob-at-idp');
    assert.equal(page.status, 409);
    assert.match(page.doc.querySelector('main')!.text, /account with bob@acme\.test already exists/);
    assert.match(page.doc.querySelector('main')!.text, /never linked by email address alone/);
    assert.equal(audits(server, 'saml.link_offered').at(-1)!.user_id, bob.sub);
    const link = page.doc.querySelector('a[href$="/saml/link/sign-in"]');
    assert.equal(link?.text.trim(), 'Sign in to link');
    const login = asPage(await s.browser.get(new URL(link!.getAttribute('href')!, page.url).href));
    assert.equal(login.doc.querySelector('input[name=email]')?.getAttribute('value'), 'bob@acme.test');
    const wrong = asPage(await s.browser.submit(login, 'form[action$="/login"]', { password: 'not bob' }));
    assert.equal(wrong.status, 401);
    // The confirmation page is not reachable without the local sign-in.
    assert.equal(asPage(await s.browser.get(`${server.issuer}/interaction/${s.uid}/saml/link`)).status, 400);
    const dry = (await server.cli(['saml', 'test', 'acme', '--response', writeCaptured(response({ nameId: 'bob-at-idp', attributes: { mail: ['bob@acme.test'] } }))])) as { user: { id: string | null; action: string } };
    assert.equal(dry.user.id, bob.sub);
    assert.match(dry.user.action, /link/, 'still not linked');
  });

  test('a password alone is not enough for an account with a second factor', async () => {
    const { s } = await offer('bob@acme.test', 'bob-at-idp');
    const login = asPage(await s.browser.get(`${server.issuer}/interaction/${s.uid}/saml/link/sign-in`));
    const factor = asPage(await s.browser.submit(login, 'form[action$="/login"]', { password: 'bob local password' }));
    assert.ok(factor.doc.querySelector('form[action$="/factor/totp"]'), `the second factor is asked: ${factor.url}`);
    assert.equal(asPage(await s.browser.get(`${server.issuer}/interaction/${s.uid}/saml/link`)).status, 400, 'no confirmation page yet');
    const post = await s.browser.follow(`${server.issuer}/interaction/${s.uid}/saml/link`, { method: 'POST', body: new URLSearchParams({ _csrf: factor.doc.querySelector('input[name=_csrf]')!.getAttribute('value')!, action: 'confirm' }) });
    assert.equal(asPage(post).status, 400, 'confirming without the second factor is refused');
    assert.equal(audits(server, 'saml.linked').length, 0);
  });

  test('the owner signs in locally (password, then the second factor) and confirms: linked, audited, signed in', async () => {
    const { s, page } = await offer('bob@acme.test', 'bob-at-idp');
    const login = asPage(await s.browser.get(new URL(page.doc.querySelector('a[href$="/saml/link/sign-in"]')!.getAttribute('href')!, page.url).href));
    const factor = asPage(await s.browser.submit(login, 'form[action$="/login"]', { password: 'bob local password' }));
    const confirm = asPage(await s.browser.submit(factor, 'form[action$="/factor/totp"]', { code: await bob.authenticator.nextCode() }));
    assert.equal(new URL(confirm.url).pathname, `/interaction/${s.uid}/saml/link`);
    assert.match(confirm.doc.querySelector('h1')!.text, /Link your account/);
    const tokens = await finish(s, await s.browser.submit(confirm, 'form[action$="/saml/link"]', {}, { name: 'action', value: 'confirm' }));
    const claims = tokens.claims()!;
    assert.equal(claims.sub, bob.sub, 'the existing account, not a new one');
    assert.ok((claims.amr as string[]).includes('saml') && (claims.amr as string[]).includes('otp'), `amr ${claims.amr}`);
    assert.deepEqual(claims.roles, ['developer', 'member']);
    const linked = audits(server, 'saml.linked').at(-1)!;
    assert.equal(linked.user_id, bob.sub);
    assert.equal(linked.data.connection, 'acme');

    // From now on the IdP signs Bob in; his own second factor still applies (step-up: local).
    const again = await startSso(new Browser(), rp, 'bob@acme.test', { acr_values: 'urn:latchkey:acr:mfa' });
    const totp = asPage(await postAcs(server, again.browser, response({ inResponseTo: again.requestId, nameId: 'bob-at-idp', attributes: { mail: ['bob@acme.test'] } }), again.relayState, 'acme'));
    assert.ok(totp.doc.querySelector('form[action$="/factor/totp"]'), 'local step-up: his authenticator app');
    const done = (await finish(again, await again.browser.submit(totp, 'form[action$="/factor/totp"]', { code: await bob.authenticator.nextCode() }))).claims()!;
    assert.equal(done.sub, bob.sub);
    assert.equal(done.acr, 'urn:latchkey:acr:mfa');
    assert.ok((done.amr as string[]).includes('saml') && (done.amr as string[]).includes('otp'));
  });

  test('on an --sso-only domain the password serves only the link; "Don’t link" links nothing', async () => {
    await server.cli(['users', 'create', '--email', 'carl@sso.test', '--password', 'cedar local password', '--verified']);
    const { s, page } = await offer('carl@sso.test', 'carl-at-idp');
    assert.equal(page.status, 409);
    const login = asPage(await s.browser.get(`${server.issuer}/interaction/${s.uid}/saml/link/sign-in`));
    const confirm = asPage(await s.browser.submit(login, 'form[action$="/login"]', { password: 'cedar local password' }));
    assert.equal(new URL(confirm.url).pathname, `/interaction/${s.uid}/saml/link`);
    const back = asPage(await s.browser.submit(confirm, 'form[action$="/saml/link"]', {}, { name: 'action', value: 'cancel' }));
    assert.ok(back.doc.querySelector('form[action$="/login"]'), 'back on the sign-in page');
    assert.equal(audits(server, 'saml.link_declined').at(-1)!.data.connection, 'sso');
    // Without an offer, the same password is refused for the domain.
    const plain = await startAuthorization(new Browser(), rp);
    assert.equal(asPage(await new Browser().submit(asPage(plain.step), 'form[action$="/login"]', { email: 'carl@sso.test', password: 'cedar local password' })).status, 403);
    const again = await offer('carl@sso.test', 'carl-at-idp');
    assert.equal(again.page.status, 409, 'offered again: nothing was linked');
  });
});

function writeMap(): string {
  const file = path.join(tmp, 'map.json');
  fs.writeFileSync(file, JSON.stringify({ groups: { Engineering: ['developer'] }, default: ['member'] }));
  return file;
}

function writeCaptured(xml: string): string {
  const file = path.join(tmp, `captured-${Date.now()}-${Math.random().toString(36).slice(2)}.b64`);
  fs.writeFileSync(file, attacks.encodeResponse(xml));
  return file;
}

describe('encrypted assertions (--encrypted-assertions)', () => {
  let encCert: string;

  before(async () => {
    const xml = await (await fetch(`${server.issuer}/saml/cipher/metadata`)).text();
    const enc = /<md:KeyDescriptor use="encryption">.*?<ds:X509Certificate>([^<]+)</s.exec(xml);
    assert.ok(enc, 'the SP metadata publishes an encryption certificate');
    encCert = `-----BEGIN CERTIFICATE-----\n${enc[1]!.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
    const signing = /<md:KeyDescriptor use="signing">.*?<ds:X509Certificate>([^<]+)</s.exec(xml)![1];
    assert.notEqual(signing, enc[1], 'a key of its own');
    assert.match(xml, /EncryptionMethod Algorithm="http:\/\/www.w3.org\/2009\/xmlenc11#aes256-gcm"/);
    assert.doesNotMatch(xml, /rsa-1_5/);
    assert.doesNotMatch(await (await fetch(`${server.issuer}/saml/acme/metadata`)).text(), /use="encryption"/);
  });

  const cipherResponse = (spec: Partial<ResponseSpec> & { nameId: string }) => idpResponse(server, { issuer: CIPHER, connection: 'cipher', signResponse: false, ...spec }, idpKey);

  for (const content of ['aes256-gcm', 'aes128-cbc'] as const) {
    test(`RSA-OAEP + ${content}: decrypted, validated, signed in`, async () => {
      const s = await startSso(new Browser(), rp, 'eve@cipher.test');
      const xml = encryptAssertion(cipherResponse({ inResponseTo: s.requestId, nameId: 'eve@cipher.test' }), encCert, { content });
      assert.doesNotMatch(xml, /eve@cipher\.test/, 'nothing readable on the way');
      const claims = (await finish(s, await postAcs(server, s.browser, xml, s.relayState, 'cipher'))).claims()!;
      assert.equal(claims.email, 'eve@cipher.test');
    });
  }

  test('refused: RSA1_5, an unsigned assertion inside, a plain assertion, the wrong key, encryption where none was asked', async () => {
    const cases: [string, (requestId: string) => string, string][] = [
      ['rsa-1_5', (id) => encryptAssertion(cipherResponse({ inResponseTo: id, nameId: 'eve@cipher.test' }), encCert, { keyTransport: 'rsa-1_5' }), 'weak_encryption_algorithm'],
      ['unsigned inside', (id) => encryptAssertion(attacks.unsigned(cipherResponse({ inResponseTo: id, nameId: 'eve@cipher.test' })), encCert), 'assertion_unsigned'],
      ['signed by another key inside', (id) => encryptAssertion(attacks.signedWithKey(cipherResponse({ inResponseTo: id, nameId: 'eve@cipher.test' }), otherKey), encCert), 'signature'],
      ['plain', (id) => cipherResponse({ inResponseTo: id, nameId: 'eve@cipher.test' }), 'assertion_not_encrypted'],
      ['wrong key', (id) => encryptAssertion(cipherResponse({ inResponseTo: id, nameId: 'eve@cipher.test' }), otherKey.certificatePem), 'decryption'],
    ];
    for (const [label, make, reason] of cases) {
      const s = await startSso(new Browser(), rp, 'eve@cipher.test');
      const before = audits(server, 'saml.rejected').length;
      const step = await postAcs(server, s.browser, make(s.requestId), s.relayState, 'cipher');
      assert.ok(isPage(step), `${label}: no redirect`);
      assert.equal(step.status, 400, label);
      assert.equal(await rejectionReason(server, before), reason, label);
    }
    const s = await startSso(new Browser(), rp, 'ida@acme.test');
    const before = audits(server, 'saml.rejected').length;
    const xml = encryptAssertion(response({ inResponseTo: s.requestId, nameId: 'ida@acme.test', signResponse: false }), encCert);
    await expectRejected(server, await postAcs(server, s.browser, xml, s.relayState, 'acme'), before, 'encrypted_assertion_unexpected');
  });

  test('saml update --no-encrypted-assertions and back keeps the same encryption certificate', async () => {
    await server.cli(['saml', 'update', 'cipher', '--no-encrypted-assertions']);
    assert.doesNotMatch(await (await fetch(`${server.issuer}/saml/cipher/metadata`)).text(), /use="encryption"/);
    const shown = (await server.cli(['saml', 'update', 'cipher', '--encrypted-assertions'])) as { encrypted_assertions: boolean };
    assert.equal(shown.encrypted_assertions, true);
    const xml = await (await fetch(`${server.issuer}/saml/cipher/metadata`)).text();
    assert.ok(xml.includes(encCert.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '')));
  });
});

describe('step-up above what the IdP gave (--step-up)', () => {
  test('idp: a new AuthnRequest with ForceAuthn and RequestedAuthnContext; its answer is the level', async () => {
    const s = await startSso(new Browser(), rp, 'sue@step.test', { acr_values: 'urn:latchkey:acr:mfa' });
    assert.match(s.authnRequest, new RegExp(`<saml:AuthnContextClassRef>${MFA_CLASS}</saml:AuthnContextClassRef>`));
    const first = idpResponse(server, { issuer: STEP, connection: 'step', inResponseTo: s.requestId, nameId: 'sue@step.test' }, idpKey);
    const toIdp = new URL(asRedirect(await postAcs(server, s.browser, first, s.relayState, 'step')));
    assert.equal(`${toIdp.origin}${toIdp.pathname}`, 'https://idp.step.test/sso', 'back to the IdP');
    const second = readAuthnRequest(toIdp);
    assert.match(second.authnRequest, /ForceAuthn="true"/);
    assert.match(second.authnRequest, new RegExp(`<samlp:RequestedAuthnContext Comparison="exact"><saml:AuthnContextClassRef>${MFA_CLASS}</saml:AuthnContextClassRef>`));
    const answer = idpResponse(server, { issuer: STEP, connection: 'step', inResponseTo: second.requestId, nameId: 'sue@step.test', classRef: MFA_CLASS }, idpKey);
    const claims = (await finish(s, await postAcs(server, s.browser, answer, second.relayState, 'step'))).claims()!;
    assert.equal(claims.acr, 'urn:latchkey:acr:mfa');
    assert.deepEqual(claims.amr, ['saml', 'mfa']);

    // Signed in at pwd, then asked for mfa by the RP: straight to the IdP (not the local factor page).
    const browser = new Browser();
    const plain = await startSso(browser, rp, 'sue@step.test');
    await finish(plain, await postAcs(server, browser, idpResponse(server, { issuer: STEP, connection: 'step', inResponseTo: plain.requestId, nameId: 'sue@step.test' }, idpKey), plain.relayState, 'step'));
    const upgrade = await startAuthorization(browser, rp, { acr_values: 'urn:latchkey:acr:mfa' });
    const up = new URL(asRedirect(upgrade.step));
    assert.equal(`${up.origin}${up.pathname}`, 'https://idp.step.test/sso');
    assert.match(readAuthnRequest(up).authnRequest, /ForceAuthn="true"/);
  });

  test('idp: an IdP that still gives less ends the sign-in with unmet_authentication_requirements', async () => {
    const s = await startSso(new Browser(), rp, 'sue@step.test', { acr_values: 'urn:latchkey:acr:mfa' });
    const toIdp = new URL(asRedirect(await postAcs(server, s.browser, idpResponse(server, { issuer: STEP, connection: 'step', inResponseTo: s.requestId, nameId: 'sue@step.test' }, idpKey), s.relayState, 'step')));
    const second = readAuthnRequest(toIdp);
    const callback = new URL(asRedirect(await postAcs(server, s.browser, idpResponse(server, { issuer: STEP, connection: 'step', inResponseTo: second.requestId, nameId: 'sue@step.test' }, idpKey), second.relayState, 'step')));
    assert.equal(callback.searchParams.get('error'), 'unmet_authentication_requirements');
  });

  test('local (the default): the user without local factors is not given mfa for the IdP’s password', async () => {
    const s = await startSso(new Browser(), rp, 'ida@acme.test', { acr_values: 'urn:latchkey:acr:mfa' });
    const step = await postAcs(server, s.browser, response({ inResponseTo: s.requestId, nameId: 'ida@acme.test' }), s.relayState, 'acme');
    // No second factor to prove it with: the state machine's answer (an error, or enrolment).
    if (isPage(step)) assert.ok(step.doc.querySelector('form[action*="/enroll"], [data-passkey-action=register]') || /Add a second step/.test(step.html), `enrolment offered: ${step.url}`);
    else assert.equal(new URL(step.redirect).searchParams.get('error'), 'unmet_authentication_requirements');
  });
});

describe('SAML jobs', () => {
  test('sweep-expired purges expired requests, landings and replay-cache rows, and only those', async (t) => {
    await withDb(t, async (client) => {
      await client.query("INSERT INTO saml_requests (relay_hash, request_id, connection_name, interaction_uid, binding_hash, expires_at) VALUES ('old', '_old', 'acme', 'x', 'y', now() - interval '1 minute'), ('new', '_new', 'acme', 'x', 'y', now() + interval '1 hour')");
      await client.query("INSERT INTO saml_seen_assertions (connection_name, assertion_id, expires_at) VALUES ('acme', '_old', now() - interval '1 minute'), ('acme', '_new', now() + interval '1 hour')");
      const { result } = await runJob('sweep-expired');
      assert.ok((result.samlRequests ?? 0) >= 1 && (result.samlAssertions ?? 0) >= 1, JSON.stringify(result));
      const left = await client.query("SELECT relay_hash FROM saml_requests WHERE relay_hash IN ('old', 'new')");
      assert.deepEqual(left.rows.map((r) => r.relay_hash), ['new']);
      const seen = await client.query("SELECT assertion_id FROM saml_seen_assertions WHERE assertion_id IN ('_old', '_new')");
      assert.deepEqual(seen.rows.map((r) => r.assertion_id), ['_new']);
    });
  });

  test('--metadata-url: fetched through the guard, refreshed daily by saml-metadata, a new entity ID refused', async (t) => {
    const refused = await server.cliRaw(['saml', 'add', '--name', 'fetched', '--metadata-url', `http://127.0.0.2:${new URL(metadataOrigin).port}/idp.xml`, '--domains', 'fetched.test']);
    assert.equal(refused.code, 1, 'a loopback origin not listed in OUTBOUND_ALLOW_ORIGINS is refused');
    await server.cli(['saml', 'add', '--name', 'fetched', '--metadata-url', `${metadataOrigin}/idp.xml`, '--domains', 'fetched.test']);
    const first = (await server.cli(['saml', 'show', 'fetched'])) as { idp_certificate_expires_at: string };
    assert.equal((await runJob('saml-metadata')).result.metadataRefreshed, 0, 'fetched today already');

    const rotated = await generateSigningCredentials('Fetched IdP, rotated', 20);
    served = { status: 200, body: idpMetadata('https://idp.fetched.test/metadata', 'https://idp.fetched.test/sso', rotated.certificatePem) };
    const aged = await withDb(t, (client) => client.query("UPDATE saml_connections SET metadata_checked_at = now() - interval '25 hours' WHERE name = 'fetched'"));
    if (!aged) return;
    assert.equal((await runJob('saml-metadata')).result.metadataRefreshed, 1);
    const second = (await server.cli(['saml', 'show', 'fetched'])) as { idp_certificate_expires_at: string; idp_certificate_expires_soon: boolean };
    assert.notEqual(second.idp_certificate_expires_at, first.idp_certificate_expires_at, 'the new certificate is in use');
    assert.equal(second.idp_certificate_expires_soon, true);

    served = { status: 200, body: idpMetadata('https://impostor.test/metadata', 'https://impostor.test/sso', otherKey.certificatePem) };
    await withDb(t, (client) => client.query("UPDATE saml_connections SET metadata_checked_at = now() - interval '25 hours' WHERE name = 'fetched'"));
    const impostor = await runJob('saml-metadata');
    assert.equal(impostor.result.metadataFailed, 1);
    assert.deepEqual(impostor.events.filter((e) => e.event === 'saml.metadata_refresh_failed').map((e) => [e.connection, e.reason]), [['fetched', 'the entity ID changed']]);
    assert.equal(((await server.cli(['saml', 'show', 'fetched'])) as { idp_entity_id: string }).idp_entity_id, 'https://idp.fetched.test/metadata');
  });

  test('saml-certificates warns about an IdP certificate expiring within 30 days, once a day; saml list flags it', async () => {
    const soon = await generateSigningCredentials('Expiring IdP', 10);
    fs.writeFileSync(path.join(tmp, 'soon.xml'), idpMetadata('https://idp.soon.test/metadata', 'https://idp.soon.test/sso', soon.certificatePem));
    await server.cli(['saml', 'add', '--name', 'soon', '--metadata', path.join(tmp, 'soon.xml'), '--domains', 'soon.test']);
    const first = (await runJob('saml-certificates')).events.filter((e) => e.event === 'saml.certificate_expiring');
    const second = (await runJob('saml-certificates')).events.filter((e) => e.event === 'saml.certificate_expiring');
    const soonWarnings = first.filter((e) => e.connection === 'soon');
    assert.equal(soonWarnings.length, 1);
    assert.ok(Number(soonWarnings[0]!.days_left) <= 9 && Number(soonWarnings[0]!.days_left) >= 8, `days_left ${soonWarnings[0]!.days_left}`);
    assert.ok(!first.some((e) => e.connection === 'acme'), 'a certificate valid for a year is not');
    assert.equal(second.length, 0, 'once a day');
    const list = (await server.cli(['saml', 'list'])) as { name: string; idp_certificate_expires_soon: boolean }[];
    assert.equal(list.find((c) => c.name === 'soon')!.idp_certificate_expires_soon, true);
    assert.equal(list.find((c) => c.name === 'acme')!.idp_certificate_expires_soon, false);
  });
});

describe('against SimpleSAMLphp', { skip: skipWithoutSimpleSamlPhp }, () => {
  let idp: SamlIdp;

  before(async () => {
    idp = await startSamlIdp({
      users: [{ username: 'hana', password: 'hana idp password', attributes: { mail: ['hana@globex.test'], displayName: ['Hana Globex'] } }],
    });
    fs.writeFileSync(path.join(tmp, 'globex.xml'), idp.metadataXml);
    await server.cli(['saml', 'add', '--name', 'globex', '--metadata', path.join(tmp, 'globex.xml'), '--domains', 'globex.test', '--allow-idp-initiated', '--encrypted-assertions', '--attribute', 'name=displayName']);
    idp.addServiceProvider(await (await fetch(`${server.issuer}/saml/globex/metadata`)).text(), { encryptAssertion: true });
  });

  after(async () => {
    await idp?.stop();
  });

  test('an encrypted assertion from SimpleSAMLphp signs in through the RP', async () => {
    const browser = new Browser();
    const started = await startAuthorization(browser, rp, { scope: 'openid email profile' });
    const toIdp = asRedirect(await browser.submit(asPage(started.step), 'form[action$="/login"]', { email: 'hana@globex.test', password: '' }));
    const posted = await walkIdpLogin(browser, toIdp, { username: 'hana', password: 'hana idp password' });
    assert.match(posted.xml, /EncryptedAssertion/);
    assert.doesNotMatch(posted.xml, /hana@globex\.test/);
    const body = new URLSearchParams({ SAMLResponse: posted.samlResponse, ...(posted.relayState ? { RelayState: posted.relayState } : {}) });
    const tokens = await finish({ started }, await browser.follow(posted.acsUrl, { method: 'POST', body }, server.issuer));
    assert.equal(tokens.claims()!.email, 'hana@globex.test');
    assert.equal(tokens.claims()!.name, 'Hana Globex');
  });

  test('IdP-initiated from SimpleSAMLphp lands on the account page', async () => {
    const browser = new Browser();
    const posted = await walkIdpLogin(browser, idp.idpInitiatedUrl(`${server.issuer}/saml/globex`, 'https://evil.example/'), { username: 'hana', password: 'hana idp password' });
    assert.doesNotMatch(posted.xml, /InResponseTo/);
    const body = new URLSearchParams({ SAMLResponse: posted.samlResponse, ...(posted.relayState ? { RelayState: posted.relayState } : {}) });
    const page = asPage(await browser.follow(posted.acsUrl, { method: 'POST', body }, server.issuer));
    assert.equal(new URL(page.url).pathname, '/account');
    assert.match(page.doc.querySelector('main')!.text, /hana@globex\.test/);
  });
});
