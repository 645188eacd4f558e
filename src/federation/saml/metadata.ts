// IdP metadata in (what we trust about a connection's IdP), SP metadata and keys out.
import 'reflect-metadata'; // @peculiar/x509's dependency injection needs it loaded first
import crypto from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { DOMParser } from '@xmldom/xmldom';
import { NS, childElements, refuseDtd, textOf } from './xml.ts';
import { ENCRYPTION_METHODS } from './decrypt.ts';

x509.cryptoProvider.set(crypto.webcrypto as unknown as Crypto);

const BINDING_REDIRECT = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect';
const BINDING_POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';
export const NAMEID_EMAIL = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
export const NAMEID_PERSISTENT = 'urn:oasis:names:tc:SAML:2.0:nameid-format:persistent';

export interface IdpInfo {
  entityId: string;
  ssoRedirectUrl: string;
  /** Signing certificates, base64 DER (as in the metadata). */
  signingCerts: string[];
  /** The earliest expiry among the signing certificates. */
  certNotAfter: Date;
}

export class MetadataError extends Error {}

/** Reads what we need from an IdP's metadata; throws MetadataError on anything unusable. */
export function parseIdpMetadata(xml: string): IdpInfo {
  try {
    refuseDtd(xml);
  } catch {
    throw new MetadataError('metadata with a DOCTYPE or entity declarations is refused');
  }
  let doc: Document;
  try {
    doc = new DOMParser({
      errorHandler: {
        error: (m: string) => {
          throw new Error(m);
        },
        fatalError: (m: string) => {
          throw new Error(m);
        },
      },
    }).parseFromString(xml, 'text/xml') as unknown as Document;
  } catch {
    throw new MetadataError('metadata is not well-formed XML');
  }
  const root = doc.documentElement;
  if (!root || root.namespaceURI !== NS.md || root.localName !== 'EntityDescriptor') throw new MetadataError('metadata must be one md:EntityDescriptor');
  const entityId = root.getAttribute('entityID');
  if (!entityId) throw new MetadataError('metadata has no entityID');
  const idp = childElements(root, NS.md, 'IDPSSODescriptor')[0];
  if (!idp) throw new MetadataError('metadata has no IDPSSODescriptor');
  const sso = childElements(idp, NS.md, 'SingleSignOnService').find((e) => e.getAttribute('Binding') === BINDING_REDIRECT);
  const ssoRedirectUrl = sso?.getAttribute('Location');
  if (!ssoRedirectUrl || !URL.canParse(ssoRedirectUrl) || !/^https?:$/.test(new URL(ssoRedirectUrl).protocol)) {
    throw new MetadataError('metadata has no HTTP-Redirect SingleSignOnService');
  }
  const signingCerts: string[] = [];
  for (const kd of childElements(idp, NS.md, 'KeyDescriptor')) {
    const use = kd.getAttribute('use');
    if (use && use !== 'signing') continue;
    for (const ki of childElements(kd, NS.ds, 'KeyInfo')) {
      for (const data of childElements(ki, NS.ds, 'X509Data')) {
        for (const c of childElements(data, NS.ds, 'X509Certificate')) signingCerts.push(textOf(c).replace(/\s+/g, ''));
      }
    }
  }
  if (signingCerts.length === 0) throw new MetadataError('metadata has no signing certificate');
  let certNotAfter: Date | undefined;
  for (const der of signingCerts) {
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(Buffer.from(der, 'base64'));
    } catch {
      throw new MetadataError('metadata has an unreadable signing certificate');
    }
    if (!certNotAfter || cert.notAfter < certNotAfter) certNotAfter = cert.notAfter;
  }
  return { entityId, ssoRedirectUrl, signingCerts, certNotAfter: certNotAfter! };
}

/** PEM of a base64 DER certificate. */
export function certPem(der: string): string {
  return `-----BEGIN CERTIFICATE-----\n${der.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
}

/** A new SP signing key (RSA 2048) and its self-signed certificate, valid for 10 years. */
export async function generateSpKey(name: string): Promise<{ privateKeyPem: string; certificatePem: string }> {
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const keys = await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    name: `CN=Latchkey SAML SP ${name}`,
    notBefore,
    notAfter: new Date(notBefore.getTime() + 10 * 365 * 24 * 3600 * 1000),
    signingAlgorithm: alg,
    keys: keys as unknown as CryptoKeyPair, // node's and the DOM's WebCrypto typings differ, not the objects
  });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const privateKeyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { privateKeyPem, certificatePem: cert.toString('pem') };
}

function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

const pemBody = (pem: string) => pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');

/**
 * Our SP metadata for one connection: signed AuthnRequests, signed assertions wanted, POST ACS;
 * with an encryption certificate when the connection wants encrypted assertions (RSA-OAEP for the
 * key, AES-GCM or AES-CBC for the content: the methods we accept, in our order of preference).
 */
export function spMetadataXml(sp: { entityId: string; acsUrl: string; certificatePem: string; encryptionCertificatePem?: string | null }): string {
  const der = pemBody(sp.certificatePem);
  const encryption = sp.encryptionCertificatePem
    ? `<md:KeyDescriptor use="encryption"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${pemBody(sp.encryptionCertificatePem)}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>` +
      ENCRYPTION_METHODS.map((m) => `<md:EncryptionMethod Algorithm="${m}"/>`).join('') +
      `</md:KeyDescriptor>`
    : '';
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<md:EntityDescriptor xmlns:md="${NS.md}" xmlns:ds="${NS.ds}" entityID="${escapeXml(sp.entityId)}">` +
    `<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="${NS.samlp}">` +
    `<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>${der}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>` +
    encryption +
    `<md:NameIDFormat>${NAMEID_EMAIL}</md:NameIDFormat>` +
    `<md:NameIDFormat>${NAMEID_PERSISTENT}</md:NameIDFormat>` +
    `<md:AssertionConsumerService Binding="${BINDING_POST}" Location="${escapeXml(sp.acsUrl)}" index="0" isDefault="true"/>` +
    `</md:SPSSODescriptor></md:EntityDescriptor>\n`
  );
}
