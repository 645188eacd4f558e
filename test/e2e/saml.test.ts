// Enterprise SSO through SAML, end to end: the real server, openid-client as the RP, the
// sign-in page's home-realm discovery, a signed AuthnRequest to the IdP, and the ACS. The IdP
// here is built in the test (Responses written and signed with xml-crypto through the attack
// generator's re-signing), so every validation rule can be hit with a genuinely signed message
// that only our own checks can refuse. The SimpleSAMLphp suite and the XSW cases are at the end.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import * as oidc from 'openid-client';
import { Browser, asPage, asRedirect, isPage, type Page } from '../helpers/browser.ts';
import { REDIRECT, insecure, startAuthorization } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';
import { generateSigningCredentials, skipWithoutSimpleSamlPhp, startSamlIdp, walkIdpLogin, type SamlIdp, type SigningCredentials } from '../helpers/saml-idp.ts';
import * as attacks from '../helpers/saml-attacks.ts';
import * as sp from '../helpers/saml-sp.ts';
import { MFA_CLASS, idpMetadata, type ResponseSpec, type Started } from '../helpers/saml-sp.ts';

const IDP_ENTITY = 'https://idp.acme.test/saml/metadata';
const IDP_SSO = 'https://idp.acme.test/saml/sso';
const OTHER_ENTITY = 'https://idp.other.test/saml/metadata';

let server: TestServer;
let rp: oidc.Configuration;
let idpKey: SigningCredentials;
let otherKey: SigningCredentials;
let tmp: string;

// saml-sp.ts's SP helpers, bound to this file's server, RP and Acme connection.
const idpResponse = (spec: Omit<ResponseSpec, 'issuer' | 'connection'> & { issuer?: string; connection?: string }, key: SigningCredentials = idpKey) =>
  sp.idpResponse(server, { ...spec, issuer: spec.issuer ?? IDP_ENTITY, connection: spec.connection ?? 'acme' }, key);
const startSso = (email: string, params: Record<string, string> = {}, browser = new Browser()) => sp.startSso(browser, rp, email, params);
const postAcs = (browser: Browser, xml: string, relayState: string | undefined, connection = 'acme') => sp.postAcs(server, browser, xml, relayState, connection);
const audits = (type: string) => sp.audits(server, type);
const rejectionReason = (before: number) => sp.rejectionReason(server, before);
const expectRejected = (step: Page | { redirect: string }, before: number, reason: string | RegExp) => sp.expectRejected(server, step, before, reason);

async function finish(s: Started, step: Page | { redirect: string }) {
  const callback = new URL(asRedirect(step));
  assert.equal(callback.searchParams.get('error'), null, `no error at the RP: ${callback}`);
  return oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: s.started.verifier, expectedState: s.started.state });
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'latchkey-saml-test-'));
  [idpKey, otherKey] = await Promise.all([generateSigningCredentials('Acme IdP'), generateSigningCredentials('Other IdP')]);
  server = await startServer();
  const created = (await server.cli(['clients', 'create', '--id', 'app', '--first-party', '--redirect-uri', REDIRECT, '--scope', 'openid email profile roles offline_access'])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'app', created.client_secret, undefined, insecure);

  fs.writeFileSync(path.join(tmp, 'acme.xml'), idpMetadata(IDP_ENTITY, IDP_SSO, idpKey.certificatePem));
  fs.writeFileSync(path.join(tmp, 'other.xml'), idpMetadata(OTHER_ENTITY, 'https://idp.other.test/sso', otherKey.certificatePem));
  fs.writeFileSync(
    path.join(tmp, 'map.yaml'),
    ['# Acme groups to Latchkey roles', 'groups:', '  Engineering: [developer]', '  "Platform Admins":', '    - admin', '    - developer', 'default: [member]', 'drop_unmapped: true', ''].join('\n'),
  );
});

after(async () => {
  await server?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('connections (CLI)', () => {
  test('saml add prints the SP URLs; the SP metadata is signed-request, signed-assertion, POST ACS', async () => {
    const added = (await server.cli([
      'saml', 'add', '--name', 'acme', '--metadata', path.join(tmp, 'acme.xml'), '--domains', 'acme.test,acme-corp.test',
      '--map', path.join(tmp, 'map.yaml'), '--acr', `${MFA_CLASS}=mfa`,
    ])) as Record<string, unknown>;
    assert.deepEqual(added, {
      name: 'acme',
      entity_id: `${server.issuer}/saml/acme`,
      acs_url: `${server.issuer}/saml/acme/acs`,
      metadata_url: `${server.issuer}/saml/acme/metadata`,
      domains: ['acme-corp.test', 'acme.test'],
    });
    await server.cli(['saml', 'add', '--name', 'other', '--metadata', path.join(tmp, 'other.xml'), '--domains', 'other.test', '--sso-only', '--default-role', 'member']);

    const res = await fetch(`${server.issuer}/saml/acme/metadata`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^application\/samlmetadata\+xml/);
    const xml = await res.text();
    assert.match(xml, /entityID="http:\/\/localhost:\d+\/saml\/acme"/);
    assert.match(xml, /AuthnRequestsSigned="true" WantAssertionsSigned="true"/);
    assert.match(xml, /<md:KeyDescriptor use="signing">.*<ds:X509Certificate>[A-Za-z0-9+/=]{200,}<\/ds:X509Certificate>/s);
    assert.match(xml, /AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="http:\/\/localhost:\d+\/saml\/acme\/acs"/);

    const list = (await server.cli(['saml', 'list'])) as { name: string; idp_certificate_expires_at: string; sso_only: boolean }[];
    assert.deepEqual(list.map((c) => [c.name, c.sso_only]), [['acme', false], ['other', true]]);
    assert.ok(Date.parse(list[0]!.idp_certificate_expires_at) > Date.now());

    const dup = await server.cliRaw(['saml', 'add', '--name', 'again', '--metadata', path.join(tmp, 'acme.xml'), '--domains', 'acme.test']);
    assert.equal(dup.code, 1, 'a domain has one owner');
    assert.match(dup.stderr, /acme\.test already belongs to connection acme/);
  });
});

describe('sign-in through the IdP', () => {
  test('email at the domain → signed AuthnRequest → ACS → JIT user → ID token with acr, roles and groups', async () => {
    const s = await startSso('alice@acme.test');
    assert.equal(`${s.redirect.origin}${s.redirect.pathname}`, IDP_SSO);
    assert.equal(s.redirect.searchParams.get('SigAlg'), 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256');
    assert.match(s.authnRequest, new RegExp(`AssertionConsumerServiceURL="${server.issuer}/saml/acme/acs"`));
    assert.match(s.authnRequest, new RegExp(`<saml:Issuer>${server.issuer}/saml/acme</saml:Issuer>`));
    assert.doesNotMatch(s.authnRequest, /ForceAuthn/);
    // The redirect binding's signature verifies with the certificate in our SP metadata.
    const spMetadata = await (await fetch(`${server.issuer}/saml/acme/metadata`)).text();
    const spCert = new crypto.X509Certificate(Buffer.from(/<ds:X509Certificate>([^<]+)</.exec(spMetadata)![1]!, 'base64'));
    const raw = s.redirect.search.slice(1).split('&');
    const signed = raw.filter((p) => !p.startsWith('Signature=')).join('&');
    const signature = Buffer.from(decodeURIComponent(raw.find((p) => p.startsWith('Signature='))!.slice('Signature='.length)), 'base64');
    assert.ok(crypto.verify('RSA-SHA256', Buffer.from(signed), spCert.publicKey, signature), 'AuthnRequest signature verifies');

    const xml = idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test', attributes: { displayName: ['Alice Example'], groups: ['Engineering', 'Platform Admins', 'Lunch Club'] } });
    const tokens = await finish(s, await postAcs(s.browser, xml, s.relayState));
    const claims = tokens.claims()!;
    assert.equal(claims.email, 'alice@acme.test');
    assert.equal(claims.email_verified, true, 'the domain belongs to the connection');
    assert.equal(claims.name, 'Alice Example');
    assert.equal(claims.acr, 'urn:latchkey:acr:pwd', 'an unmapped class ref is one factor');
    assert.deepEqual(claims.amr, ['saml']);
    assert.deepEqual(claims.roles, ['admin', 'developer', 'member'], 'unmapped groups grant nothing (drop_unmapped)');
    assert.deepEqual(claims.groups, ['Engineering', 'Lunch Club', 'Platform Admins']);
    const info = await oidc.fetchUserInfo(rp, tokens.access_token, claims.sub);
    assert.deepEqual(info.roles, ['admin', 'developer', 'member']);
    const created = audits('user.created').filter((a) => a.user_id === claims.sub);
    assert.equal(created.length, 1);
    assert.equal(created[0]!.data.via, 'saml');

    // Second sign-in: out of Platform Admins. Same user, the admin role is removed and audited.
    const again = await startSso('alice@acme.test');
    const xml2 = idpResponse({ inResponseTo: again.requestId, nameId: 'alice@acme.test', attributes: { displayName: ['Alice Example'], groups: ['Engineering'] }, classRef: MFA_CLASS });
    const claims2 = (await finish(again, await postAcs(again.browser, xml2, again.relayState))).claims()!;
    assert.equal(claims2.sub, claims.sub);
    assert.deepEqual(claims2.roles, ['developer', 'member']);
    assert.equal(claims2.acr, 'urn:latchkey:acr:mfa', 'the --acr map turns the IdP class ref into our level');
    assert.ok((claims2.amr as string[]).includes('saml'));
    const changed = audits('user.roles_changed').filter((a) => a.user_id === claims.sub);
    // The dry run over a captured response says what it would do, and changes nothing.
    fs.writeFileSync(path.join(tmp, 'captured.b64'), attacks.encodeResponse(xml2));
    const dry = (await server.cli(['saml', 'test', 'acme', '--response', path.join(tmp, 'captured.b64')])) as Record<string, unknown>;
    assert.deepEqual({ ...dry, in_response_to: undefined }, {
      valid: true, name_id: 'alice@acme.test', email: 'alice@acme.test', name: 'Alice Example', groups: ['Engineering'], roles: ['developer', 'member'],
      level: 'mfa', in_response_to: undefined, user: { id: claims.sub, action: 'update' },
    });
    fs.writeFileSync(path.join(tmp, 'forged.xml'), attacks.withAudience(xml2, otherKey, 'x'));
    const refused = await server.cliRaw(['saml', 'test', 'acme', '--response', path.join(tmp, 'forged.xml'), '--json']);
    assert.equal(refused.code, 1);
    assert.equal(JSON.parse(refused.stdout).reason, 'signature');
    assert.deepEqual(changed.at(-1)!.data, { connection: 'acme', added: [], removed: ['admin'] });
  });

  test('a claims-less scope gets no roles; prompt=login becomes ForceAuthn and acr_values RequestedAuthnContext', async () => {
    const s = await startSso('carol@acme.test', { prompt: 'login', acr_values: 'urn:latchkey:acr:mfa' });
    assert.match(s.authnRequest, /ForceAuthn="true"/);
    assert.match(s.authnRequest, new RegExp(`<samlp:RequestedAuthnContext Comparison="exact"><saml:AuthnContextClassRef>${MFA_CLASS}</saml:AuthnContextClassRef>`));

    const browser = new Browser();
    const started = await startAuthorization(browser, rp, { scope: 'openid email' });
    const redirect = new URL(asRedirect(await browser.submit(asPage(started.step), 'form[action$="/login"]', { email: 'dave@acme.test', password: '' })));
    const { requestId, relayState } = sp.readAuthnRequest(redirect);
    const step = await postAcs(browser, idpResponse({ inResponseTo: requestId, nameId: 'dave@acme.test', attributes: { groups: ['Engineering'] } }), relayState);
    const tokens = await oidc.authorizationCodeGrant(rp, new URL(asRedirect(step)), { pkceCodeVerifier: started.verifier, expectedState: started.state });
    assert.equal(tokens.claims()!.roles, undefined);
    assert.equal(tokens.claims()!.groups, undefined);
  });

  test('"Sign in with SSO": a typed domain starts the same sign-in', async () => {
    const browser = new Browser();
    const started = await startAuthorization(browser, rp);
    const login = asPage(started.step);
    const link = login.doc.querySelector('a[href$="/sso"]');
    assert.equal(link?.text.trim(), 'Sign in with SSO');
    const form = asPage(await browser.get(new URL(link!.getAttribute('href')!, login.url).href));
    assert.equal(form.doc.querySelector('label[for=domain]')?.text.trim(), 'Email or company domain');
    const unknown = asPage(await browser.submit(form, 'form[action$="/sso"]', { domain: 'nowhere.test' }));
    assert.equal(unknown.status, 400);
    const redirect = new URL(asRedirect(await browser.submit(form, 'form[action$="/sso"]', { domain: 'ACME-corp.test' })));
    assert.equal(`${redirect.origin}${redirect.pathname}`, IDP_SSO);
  });

  test('an existing local account is never linked by email alone (its owner must sign in: saml-more.test.ts)', async () => {
    await server.cli(['users', 'create', '--email', 'bob@acme.test', '--password', 'bob local password', '--verified']);
    const s = await startSso('bob@acme.test');
    const page = asPage(await postAcs(s.browser, idpResponse({ inResponseTo: s.requestId, nameId: 'bob@acme.test' }), s.relayState));
    assert.equal(page.status, 409);
    assert.match(page.doc.querySelector('main')!.text, /never linked by email address alone/);
    assert.ok(page.doc.querySelector('a[href$="/saml/link/sign-in"]'), 'offers "Sign in to link"');
    assert.equal(audits('saml.link_offered').length, 1);
    assert.equal(audits('saml.linked').length, 0);
  });

  test('a deactivated user cannot sign in through SAML', async (t) => {
    const databaseUrl = server.env.DATABASE_URL;
    if (!databaseUrl) return t.skip('needs PostgreSQL (DATABASE_URL) to deactivate the user beside the running server');
    const first = await startSso('gina@acme.test');
    const sub = (await finish(first, await postAcs(first.browser, idpResponse({ inResponseTo: first.requestId, nameId: 'gina@acme.test' }), first.relayState))).claims()!.sub;
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      await client.query("UPDATE users SET status = 'disabled' WHERE id = $1", [sub]);
    } finally {
      await client.end();
    }
    const again = await startSso('gina@acme.test');
    const before = audits('saml.rejected').length;
    const page = asPage(await postAcs(again.browser, idpResponse({ inResponseTo: again.requestId, nameId: 'gina@acme.test' }), again.relayState));
    assert.equal(page.status, 403);
    assert.match(page.doc.querySelector('main')!.text, /deactivated/);
    assert.equal(await rejectionReason(before), 'deactivated');
  });

  test('--sso-only: password, emailed link, sign-up and reset are refused for the domain, and nothing is mailed', async () => {
    const browser = new Browser();
    const started = await startAuthorization(browser, rp);
    const login = asPage(started.step);
    const withPassword = asPage(await browser.submit(login, 'form[action$="/login"]', { email: 'erin@other.test', password: 'some password' }));
    assert.equal(withPassword.status, 403);
    assert.match(withPassword.doc.querySelector('main')!.text, /sign in through your organisation’s single sign-on/);
    assert.ok(withPassword.doc.querySelector('a[href*="/saml/start?connection=other"]'));

    const link = asPage(await browser.submitWith(login, 'button[formaction$="/magic-link"]', { email: 'erin@other.test' }));
    assert.equal(link.status, 403);
    const signupPage = asPage(await browser.get(`${server.issuer}/interaction/${/\/interaction\/([^/]+)/.exec(login.url)![1]}/signup`));
    const signup = asPage(await browser.submit(signupPage, 'form[action$="/signup"]', { name: 'Erin', email: 'erin@other.test', password: 'a long enough password' }));
    assert.equal(signup.status, 403);
    const forgot = asPage(await browser.get(`${server.issuer}/forgot-password`));
    const reset = asPage(await browser.submit(forgot, 'form[action="/forgot-password"]', { email: 'erin@other.test' }));
    assert.equal(reset.status, 403);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(!server.logs.join('').includes('erin@other.test'), 'no mail (and no address in the log)');
  });
});

describe('the ACS refuses, audits and explains', () => {
  test('wrong audience', async () => {
    const s = await startSso('alice@acme.test');
    const before = audits('saml.rejected').length;
    const xml = attacks.withAudience(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), idpKey, 'https://evil.example/sp');
    await expectRejected(await postAcs(s.browser, xml, s.relayState), before, 'audience');
  });

  test('wrong Destination', async () => {
    const s = await startSso('alice@acme.test');
    const before = audits('saml.rejected').length;
    const xml = attacks.withDestination(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), idpKey, 'https://evil.example/acs');
    await expectRejected(await postAcs(s.browser, xml, s.relayState), before, 'destination');
  });

  test('wrong Recipient', async () => {
    const s = await startSso('alice@acme.test');
    const before = audits('saml.rejected').length;
    const xml = attacks.withRecipient(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), idpKey, 'https://evil.example/acs');
    await expectRejected(await postAcs(s.browser, xml, s.relayState), before, 'recipient');
  });

  test('expired, and not yet valid', async () => {
    const s = await startSso('alice@acme.test');
    let before = audits('saml.rejected').length;
    await expectRejected(await postAcs(s.browser, attacks.expired(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), idpKey), s.relayState), before, 'expired');
    before = audits('saml.rejected').length;
    await expectRejected(await postAcs(s.browser, attacks.notYetValid(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), idpKey), s.relayState), before, 'not_yet_valid');
  });

  test('a replayed assertion', async () => {
    const s = await startSso('alice@acme.test');
    const xml = idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' });
    await finish(s, await postAcs(s.browser, xml, s.relayState));
    const before = audits('saml.rejected').length;
    await expectRejected(await postAcs(new Browser(), xml, s.relayState), before, 'replay');
  });

  test('an unsolicited response (no InResponseTo), with or without a RelayState', async () => {
    const s = await startSso('alice@acme.test');
    let before = audits('saml.rejected').length;
    await expectRejected(await postAcs(s.browser, idpResponse({ nameId: 'alice@acme.test' }), undefined), before, 'unsolicited');
    before = audits('saml.rejected').length;
    await expectRejected(await postAcs(s.browser, idpResponse({ nameId: 'alice@acme.test' }), s.relayState), before, 'unsolicited');
  });

  test('InResponseTo of another browser’s request', async () => {
    const victim = await startSso('alice@acme.test');
    const attacker = await startSso('mallory@acme.test');
    // The victim's answer under the attacker's RelayState: the request ids differ.
    let before = audits('saml.rejected').length;
    await expectRejected(await postAcs(attacker.browser, idpResponse({ inResponseTo: victim.requestId, nameId: 'alice@acme.test' }), attacker.relayState), before, 'in_response_to');
    // The attacker's own valid answer, delivered into the victim's browser (login CSRF): the ACS
    // takes it, but only the browser that started the request may finish it.
    before = audits('saml.rejected').length;
    const step = await postAcs(victim.browser, idpResponse({ inResponseTo: attacker.requestId, nameId: 'mallory@acme.test' }), attacker.relayState);
    const page = asPage(step);
    assert.equal(page.status, 400);
    assert.equal(await rejectionReason(before), 'other_browser');
  });

  test('signed with another connection’s certificate', async () => {
    const s = await startSso('alice@acme.test');
    const before = audits('saml.rejected').length;
    const xml = attacks.signedWithKey(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), otherKey);
    await expectRejected(await postAcs(s.browser, xml, s.relayState), before, 'signature');
  });

  test('unsigned, and signed Response around an unsigned Assertion', async () => {
    const s = await startSso('alice@acme.test');
    let before = audits('saml.rejected').length;
    await expectRejected(await postAcs(s.browser, attacks.unsigned(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' })), s.relayState), before, 'assertion_unsigned');
    before = audits('saml.rejected').length;
    await expectRejected(await postAcs(s.browser, attacks.unsignedAssertion(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), idpKey), s.relayState), before, 'assertion_unsigned');
  });

  test('DOCTYPE and entities (XXE, billion laughs)', async () => {
    const s = await startSso('alice@acme.test');
    for (const kind of ['xxe', 'billion-laughs', 'internal-entity'] as const) {
      const before = audits('saml.rejected').length;
      await expectRejected(await postAcs(s.browser, attacks.withDoctype(idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test' }), kind), s.relayState), before, 'doctype');
    }
  });

  test('a comment-split NameID', async () => {
    const s = await startSso('alice@acme.test');
    const before = audits('saml.rejected').length;
    const signed = idpResponse({ inResponseTo: s.requestId, nameId: 'alice@acme.test.evil.com' });
    await expectRejected(await postAcs(s.browser, attacks.injectComment(signed, 'alice@acme.test'), s.relayState), before, 'comment');
  });

  test('signature wrapping XSW1–XSW8 (the forged claims never sign anybody in)', async () => {
    for (const variant of attacks.XSW_VARIANTS) {
      for (const responseSignature of ['remove', 'keep'] as const) {
        const s = await startSso('mallory@acme.test');
        const before = audits('saml.rejected').length;
        const genuine = idpResponse({ inResponseTo: s.requestId, nameId: 'mallory@acme.test', attributes: { groups: ['Lunch Club'] } });
        const forged = attacks.xsw(variant, genuine, { nameId: 'alice@acme.test', attributes: { groups: ['Platform Admins'] } }, { responseSignature });
        const step = await postAcs(s.browser, forged, s.relayState);
        assert.ok(isPage(step), `${variant}/${responseSignature}: no redirect to the RP`);
        assert.equal(step.status, 400, `${variant}/${responseSignature} refused`);
        const reason = await rejectionReason(before);
        assert.match(reason, /^(assertion_count|assertion_position|signature|signature_position|signature_reference|duplicate_id|malformed|schema|samlify)$/, `${variant}: ${reason}`);
      }
    }
  });
});

describe('against SimpleSAMLphp (an IdP that is not samlify)', { skip: skipWithoutSimpleSamlPhp }, () => {
  let idp: SamlIdp;

  before(async () => {
    idp = await startSamlIdp({
      users: [{ username: 'frank', password: 'frank idp password', attributes: { mail: ['frank@initech.test'], displayName: ['Frank Initech'], groups: ['Engineering', 'Platform Admins'] } }],
    });
    fs.writeFileSync(path.join(tmp, 'initech.xml'), idp.metadataXml);
    await server.cli(['saml', 'add', '--name', 'initech', '--metadata', path.join(tmp, 'initech.xml'), '--domains', 'initech.test', '--map', path.join(tmp, 'map.yaml'), '--attribute', 'name=displayName']);
    idp.addServiceProvider(await (await fetch(`${server.issuer}/saml/initech/metadata`)).text());
  });

  after(async () => {
    await idp?.stop();
  });

  async function signIn(browser: Browser) {
    const started = await startAuthorization(browser, rp, { scope: 'openid email profile roles' });
    const toIdp = asRedirect(await browser.submit(asPage(started.step), 'form[action$="/login"]', { email: 'frank@initech.test', password: '' }));
    assert.ok(toIdp.startsWith(idp.ssoUrl), `sent to the IdP: ${toIdp}`);
    const posted = await walkIdpLogin(browser, toIdp, { username: 'frank', password: 'frank idp password' });
    assert.equal(posted.acsUrl, `${server.issuer}/saml/initech/acs`);
    const body = new URLSearchParams({ SAMLResponse: posted.samlResponse, ...(posted.relayState ? { RelayState: posted.relayState } : {}) });
    const step = await browser.follow(posted.acsUrl, { method: 'POST', body }, server.issuer);
    const callback = new URL(asRedirect(step));
    return { posted, tokens: await oidc.authorizationCodeGrant(rp, callback, { pkceCodeVerifier: started.verifier, expectedState: started.state }) };
  }

  test('RP → our sign-in page → SimpleSAMLphp → ACS → JIT user → ID token with roles; changed groups drop a role', async () => {
    const first = await signIn(new Browser());
    const claims = first.tokens.claims()!;
    assert.equal(claims.email, 'frank@initech.test');
    assert.equal(claims.name, 'Frank Initech');
    assert.equal(claims.email_verified, true);
    assert.deepEqual(claims.roles, ['admin', 'developer', 'member']);
    assert.deepEqual(claims.amr, ['saml']);

    idp.setUserAttributes('frank', { mail: ['frank@initech.test'], displayName: ['Frank Initech'], groups: ['Engineering'] });
    const second = await signIn(new Browser());
    const claims2 = second.tokens.claims()!;
    assert.equal(claims2.sub, claims.sub);
    assert.deepEqual(claims2.roles, ['developer', 'member']);
    assert.deepEqual(audits('user.roles_changed').filter((a) => a.user_id === claims.sub).at(-1)!.data, { connection: 'initech', added: [], removed: ['admin'] });
  });

  test('an IdP whose metadata does not ask for signed AuthnRequests still gets our signed one', async () => {
    const plain = await startSamlIdp({ wantAuthnRequestsSigned: false });
    try {
      assert.doesNotMatch(plain.metadataXml, /WantAuthnRequestsSigned/);
      fs.writeFileSync(path.join(tmp, 'plain.xml'), plain.metadataXml);
      await server.cli(['saml', 'add', '--name', 'plain', '--metadata', path.join(tmp, 'plain.xml'), '--domains', 'plain.test']);
      const browser = new Browser();
      const started = await startAuthorization(browser, rp);
      const toIdp = asRedirect(await browser.submit(asPage(started.step), 'form[action$="/login"]', { email: 'someone@plain.test', password: '' }));
      assert.ok(toIdp.startsWith(plain.ssoUrl), `sent to the IdP: ${toIdp}`);
      assert.ok(new URL(toIdp).searchParams.get('Signature'), 'the AuthnRequest is signed all the same');
    } finally {
      await plain.stop();
    }
  });

  test('XSW1–XSW8 over a SimpleSAMLphp response are refused', async () => {
    for (const variant of attacks.XSW_VARIANTS) {
      const browser = new Browser();
      const started = await startAuthorization(browser, rp);
      const toIdp = asRedirect(await browser.submit(asPage(started.step), 'form[action$="/login"]', { email: 'frank@initech.test', password: '' }));
      const posted = await walkIdpLogin(browser, toIdp, { username: 'frank', password: 'frank idp password' });
      const forged = attacks.xsw(variant, posted.xml, { nameId: 'alice@acme.test', attributes: { mail: ['alice@acme.test'], groups: ['Platform Admins'] } });
      const before = audits('saml.rejected').length;
      const step = await postAcs(browser, forged, posted.relayState, 'initech');
      assert.ok(isPage(step) && step.status === 400, `${variant} refused`);
      assert.equal(audits('saml.rejected').at(-1)!.data.connection, 'initech');
      await rejectionReason(before);
    }
  });
});
