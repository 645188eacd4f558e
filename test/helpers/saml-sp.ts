// The SP side of SAML e2e tests against a running Latchkey: IdP metadata and signed Responses
// written here (re-signed with a key the test holds, so only our own checks can refuse them),
// the RP → sign-in page → AuthnRequest start, the cross-site POST to the ACS, the audit trail in
// the server's log, and assertion encryption (XML Encryption) to a connection's certificate.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import type * as oidc from 'openid-client';
import { asPage, asRedirect, type Browser, type Page } from './browser.ts';
import { startAuthorization } from './rp.ts';
import type { TestServer } from './server.ts';
import type { SigningCredentials } from './saml-idp.ts';
import * as attacks from './saml-attacks.ts';

export const PASSWORD_CLASS = 'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport';
export const MFA_CLASS = 'https://refeds.org/profile/mfa';

export function idpMetadata(entityId: string, sso: string, certificatePem: string): string {
  const der = certificatePem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  return `<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="${entityId}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol" WantAuthnRequestsSigned="true">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="${sso}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const iso = (offsetSeconds: number) => new Date(Date.now() + offsetSeconds * 1000).toISOString();
const newId = () => `_${crypto.randomBytes(16).toString('hex')}`;

export interface ResponseSpec {
  issuer: string;
  connection: string;
  nameId: string;
  inResponseTo?: string | null;
  attributes?: Record<string, string[]>;
  classRef?: string;
  /** Sign the Response element too (default true). */
  signResponse?: boolean;
}

/** A Response as an IdP writes it, with the Assertion (and by default the Response) signed with `key`. */
export function idpResponse(server: TestServer, spec: ResponseSpec, key: SigningCredentials): string {
  const acs = `${server.issuer}/saml/${spec.connection}/acs`;
  const audience = `${server.issuer}/saml/${spec.connection}`;
  const irt = spec.inResponseTo ? ` InResponseTo="${esc(spec.inResponseTo)}"` : '';
  const attrs = Object.entries(spec.attributes ?? {})
    .map(([n, vs]) => `<saml:Attribute Name="${esc(n)}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:basic">${vs.map((v) => `<saml:AttributeValue xsi:type="xs:string">${esc(v)}</saml:AttributeValue>`).join('')}</saml:Attribute>`)
    .join('');
  const xml =
    `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${newId()}" Version="2.0" IssueInstant="${iso(0)}" Destination="${acs}"${irt}>` +
    `<saml:Issuer>${spec.issuer}</saml:Issuer><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>` +
    `<saml:Assertion xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xs="http://www.w3.org/2001/XMLSchema" ID="${newId()}" Version="2.0" IssueInstant="${iso(0)}">` +
    `<saml:Issuer>${spec.issuer}</saml:Issuer>` +
    `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${esc(spec.nameId)}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="${iso(300)}" Recipient="${acs}"${irt}/></saml:SubjectConfirmation></saml:Subject>` +
    `<saml:Conditions NotBefore="${iso(-30)}" NotOnOrAfter="${iso(300)}"><saml:AudienceRestriction><saml:Audience>${audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>` +
    `<saml:AuthnStatement AuthnInstant="${iso(-5)}" SessionIndex="${newId()}"><saml:AuthnContext><saml:AuthnContextClassRef>${spec.classRef ?? PASSWORD_CLASS}</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>` +
    (attrs ? `<saml:AttributeStatement>${attrs}</saml:AttributeStatement>` : '') +
    `</saml:Assertion></samlp:Response>`;
  return attacks.resign(xml, key, () => {}, { signAssertion: true, signResponse: spec.signResponse ?? true });
}

export interface Started {
  browser: Browser;
  started: { verifier: string; state: string };
  uid: string;
  requestId: string;
  relayState: string;
  authnRequest: string;
  redirect: URL;
}

/** RP → sign-in page → email at an SSO domain (no password) → the AuthnRequest to the IdP. */
export async function startSso(browser: Browser, rp: oidc.Configuration, email: string, params: Record<string, string> = {}): Promise<Started> {
  const started = await startAuthorization(browser, rp, { scope: 'openid email profile roles', ...params });
  const login = asPage(started.step);
  const uid = /\/interaction\/([^/]+)/.exec(login.url)![1]!;
  const redirect = new URL(asRedirect(await browser.submit(login, 'form[action$="/login"]', { email, password: '' })));
  return { browser, started, uid, ...readAuthnRequest(redirect), redirect };
}

/** The AuthnRequest (XML), its ID and the RelayState of an HTTP-Redirect to the IdP. */
export function readAuthnRequest(redirect: URL) {
  const authnRequest = zlib.inflateRawSync(Buffer.from(redirect.searchParams.get('SAMLRequest')!, 'base64')).toString('utf8');
  return { authnRequest, requestId: /ID="([^"]+)"/.exec(authnRequest)![1]!, relayState: redirect.searchParams.get('RelayState')! };
}

/** The IdP's auto-POST to the ACS (cross-site: none of our SameSite cookies would be useful). */
export async function postAcs(server: TestServer, browser: Browser, xml: string, relayState: string | undefined, connection: string) {
  const body = new URLSearchParams({ SAMLResponse: attacks.encodeResponse(xml) });
  if (relayState !== undefined) body.set('RelayState', relayState);
  return browser.follow(`${server.issuer}/saml/${connection}/acs`, { method: 'POST', body }, server.issuer);
}

export interface AuditLine {
  type: string;
  user_id: string | null;
  data: Record<string, unknown>;
}

export function audits(server: TestServer, type: string): AuditLine[] {
  return logEvents(server, (e) => (e.event === 'audit' && (e.audit as AuditLine | undefined)?.type === type ? [e.audit as AuditLine] : []));
}

export function logEvents<T>(server: TestServer, pick: (e: Record<string, unknown>) => T[]): T[] {
  return server.logs
    .join('')
    .split('\n')
    .flatMap((line) => {
      try {
        return pick(JSON.parse(line) as Record<string, unknown>);
      } catch {
        return [];
      }
    });
}

/** Waits for a `saml.rejected` audit line after the first `before` and returns its reason. */
export async function rejectionReason(server: TestServer, before: number): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const list = audits(server, 'saml.rejected');
    if (list.length > before) return String(list.at(-1)!.data.reason);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no saml.rejected audit');
}

export async function expectRejected(server: TestServer, step: Page | { redirect: string }, before: number, reason: string | RegExp) {
  const page = asPage(step);
  assert.equal(page.status, 400, `a 400 page, got ${page.status}: ${page.doc.querySelector('h1')?.text}`);
  assert.match(page.doc.querySelector('h1')!.text, /couldn’t sign you in/);
  assert.doesNotMatch(page.html, /<saml|samlp:|at .*\.ts:\d+/, 'no XML and no stack on the page');
  const got = await rejectionReason(server, before);
  if (typeof reason === 'string') assert.equal(got, reason);
  else assert.match(got, reason);
}

// --- XML Encryption of the assertion -------------------------------------------------------------

const XENC = 'http://www.w3.org/2001/04/xmlenc#';
const CONTENT = {
  'aes128-cbc': { uri: `${XENC}aes128-cbc`, cipher: 'aes-128-cbc', key: 16, iv: 16 },
  'aes256-cbc': { uri: `${XENC}aes256-cbc`, cipher: 'aes-256-cbc', key: 32, iv: 16 },
  'aes128-gcm': { uri: 'http://www.w3.org/2009/xmlenc11#aes128-gcm', cipher: 'aes-128-gcm', key: 16, iv: 12 },
  'aes256-gcm': { uri: 'http://www.w3.org/2009/xmlenc11#aes256-gcm', cipher: 'aes-256-gcm', key: 32, iv: 12 },
} as const;

export interface EncryptOptions {
  content?: keyof typeof CONTENT;
  /** 'rsa-oaep-mgf1p' (default) or the refused 'rsa-1_5'. */
  keyTransport?: 'rsa-oaep-mgf1p' | 'rsa-1_5';
}

/**
 * The Response with its (signed) Assertion replaced by an EncryptedAssertion to `certificatePem`
 * (the connection's encryption certificate from our SP metadata). The Response must be unsigned
 * or its signature is left broken (it covered the plaintext).
 */
export function encryptAssertion(xml: string, certificatePem: string, options: EncryptOptions = {}): string {
  const doc = new DOMParser().parseFromString(xml, 'text/xml') as unknown as Document;
  const response = doc.documentElement!;
  const assertion = response.getElementsByTagNameNS(attacks.NS.saml, 'Assertion').item(0)!;
  const plain = new XMLSerializer().serializeToString(assertion as never);
  const content = CONTENT[options.content ?? 'aes128-cbc'];
  const key = crypto.randomBytes(content.key);
  const iv = crypto.randomBytes(content.iv);
  const cipher = crypto.createCipheriv(content.cipher, key, iv);
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
  const data = content.cipher.endsWith('gcm') ? Buffer.concat([iv, body, (cipher as crypto.CipherGCM).getAuthTag()]) : Buffer.concat([iv, body]);
  const publicKey = new crypto.X509Certificate(certificatePem).publicKey;
  const oaep = (options.keyTransport ?? 'rsa-oaep-mgf1p') === 'rsa-oaep-mgf1p';
  const wrapped = crypto.publicEncrypt({ key: publicKey, padding: oaep ? crypto.constants.RSA_PKCS1_OAEP_PADDING : crypto.constants.RSA_PKCS1_PADDING, oaepHash: 'sha1' }, key);
  const encrypted =
    `<saml:EncryptedAssertion xmlns:saml="${attacks.NS.saml}"><xenc:EncryptedData xmlns:xenc="${XENC}" Type="${XENC}Element">` +
    `<xenc:EncryptionMethod Algorithm="${content.uri}"/>` +
    `<ds:KeyInfo xmlns:ds="${attacks.NS.ds}"><xenc:EncryptedKey><xenc:EncryptionMethod Algorithm="${XENC}${oaep ? 'rsa-oaep-mgf1p' : 'rsa-1_5'}">` +
    (oaep ? `<ds:DigestMethod Algorithm="http://www.w3.org/2000/09/xmldsig#sha1"/>` : '') +
    `</xenc:EncryptionMethod><xenc:CipherData><xenc:CipherValue>${wrapped.toString('base64')}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>` +
    `<xenc:CipherData><xenc:CipherValue>${data.toString('base64')}</xenc:CipherValue></xenc:CipherData></xenc:EncryptedData></saml:EncryptedAssertion>`;
  const node = new DOMParser().parseFromString(encrypted, 'text/xml').documentElement!;
  response.replaceChild(doc.importNode(node as unknown as Node, true), assertion);
  return new XMLSerializer().serializeToString(doc as never);
}
