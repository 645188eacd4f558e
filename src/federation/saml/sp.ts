// samlify as our SP: signed HTTP-Redirect AuthnRequests, and its own response pipeline (schema,
// status, signature, issuer, time) run after our stricter checks in validate.ts.
import crypto from 'node:crypto';
import * as samlify from 'samlify';
import type { Level } from '../../assurance/index.ts';
import type { SamlConnection } from './connections.ts';
import { NAMEID_EMAIL } from './metadata.ts';
import { SamlRejection, validateSchema } from './xml.ts';

samlify.setSchemaValidator({ validate: validateSchema });

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const POST = 'urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST';

export interface SpIdentity {
  entityId: string;
  acsUrl: string;
  certificatePem: string;
  privateKeyPem: string;
  /** The encryption key, for connections that want encrypted assertions. */
  encryptionKeyPem?: string | null;
}

function entities(connection: SamlConnection, sp: SpIdentity, skewSeconds: number) {
  const idp = samlify.IdentityProvider({ metadata: connection.idpMetadata, wantAuthnRequestsSigned: true, isAssertionEncrypted: Boolean(connection.encryptedAssertions && sp.encryptionKeyPem) });
  // Our AuthnRequests are always signed. samlify refuses to build one unless the IdP's metadata
  // says WantAuthnRequestsSigned="true" (many IdPs' metadata omit it, and its constructor option
  // is ignored when metadata is given), so the parsed flag is aligned with what we send.
  (idp.entityMeta as unknown as { meta: Record<string, unknown> }).meta.wantAuthnRequestsSigned = 'true';
  const self = samlify.ServiceProvider({
    entityID: sp.entityId,
    authnRequestsSigned: true,
    wantAssertionsSigned: true,
    signingCert: sp.certificatePem,
    privateKey: sp.privateKeyPem,
    ...(sp.encryptionKeyPem ? { encPrivateKey: sp.encryptionKeyPem } : {}),
    requestSignatureAlgorithm: RSA_SHA256,
    nameIDFormat: [NAMEID_EMAIL],
    assertionConsumerService: [{ Binding: POST, Location: sp.acsUrl }],
    clockDrifts: [-skewSeconds * 1000, skewSeconds * 1000],
  });
  return { idp, sp: self };
}

function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

export interface AuthnRequestOptions {
  relayState: string;
  forceAuthn: boolean;
  /** The IdP AuthnContextClassRefs that meet the requested levels (from the connection's --acr map). */
  requestedContexts: string[];
}

/** A signed HTTP-Redirect AuthnRequest: the URL to send the browser to and the request's ID. */
export function createAuthnRequest(connection: SamlConnection, sp: SpIdentity, options: AuthnRequestOptions): { id: string; url: string } {
  const { idp, sp: self } = entities(connection, sp, 0);
  const id = `_${crypto.randomBytes(20).toString('hex')}`;
  const requested = options.requestedContexts.length
    ? `<samlp:RequestedAuthnContext Comparison="exact">${options.requestedContexts.map((c) => `<saml:AuthnContextClassRef>${escapeXml(c)}</saml:AuthnContextClassRef>`).join('')}</samlp:RequestedAuthnContext>`
    : '';
  const xml =
    `<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${id}" Version="2.0"` +
    ` IssueInstant="${new Date().toISOString()}" Destination="${escapeXml(connection.idp.ssoRedirectUrl)}"` +
    (options.forceAuthn ? ' ForceAuthn="true"' : '') +
    ` ProtocolBinding="${POST}" AssertionConsumerServiceURL="${escapeXml(sp.acsUrl)}">` +
    `<saml:Issuer>${escapeXml(sp.entityId)}</saml:Issuer>` +
    `<samlp:NameIDPolicy AllowCreate="true"/>` +
    requested +
    `</samlp:AuthnRequest>`;
  const built = self.createLoginRequest(idp, 'redirect', { relayState: options.relayState, customTagReplacement: () => ({ id, context: xml }) });
  return { id, url: built.context };
}

/** The IdP class refs our --acr map says meet `levels` (any level at or above the first wanted). */
export function contextsFor(acrMap: Record<string, Level>, wanted: Level[]): string[] {
  if (wanted.length === 0) return [];
  const order: Level[] = ['pwd', 'mfa', 'phr'];
  const min = Math.min(...wanted.map((l) => order.indexOf(l)));
  return Object.entries(acrMap)
    .filter(([, level]) => order.indexOf(level) >= min)
    .map(([ref]) => ref);
}

/** samlify's pipeline over a response our checks already accepted (defence in depth). */
export async function samlifyCheck(connection: SamlConnection, sp: SpIdentity, samlResponse: string, skewSeconds: number): Promise<void> {
  const { idp, sp: self } = entities(connection, sp, skewSeconds);
  try {
    await self.parseLoginResponse(idp, 'post', { body: { SAMLResponse: samlResponse } });
  } catch (err) {
    if (err instanceof SamlRejection) throw err;
    const code = err instanceof Error ? err.message : String(err);
    throw new SamlRejection('samlify', code.slice(0, 80));
  }
}
