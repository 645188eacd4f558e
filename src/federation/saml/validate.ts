// The ACS's checks on a SAML Response. samlify (with the schema validator) runs as well, but it
// does not check Audience, InResponseTo, Destination/Recipient, SubjectConfirmationData expiry or
// replay, and it accepts a message when any ONE of its signatures verifies. So here: exactly one
// Assertion, directly under the Response, signed by its own enveloped signature with the
// connection's certificate (never a KeyInfo certificate), the reference being that Assertion's
// ID and unique in the document; every value we trust is read from the canonical XML that the
// signature covered (xml-crypto's signed reference), not from the document around it.
import { XMLSerializer } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';
import type { SamlConnection } from './connections.ts';
import type { AssertionFacts } from './mapping.ts';
import { certPem } from './metadata.ts';
import { decryptAssertion } from './decrypt.ts';
import { NS, SamlRejection, childElements, descendants, hasCommentsOrPIs, onlyChild, optionalChild, parseStrict, refuseDtd, textOf } from './xml.ts';

const MAX_RESPONSE_BYTES = 256 * 1024;
const BEARER = 'urn:oasis:names:tc:SAML:2.0:cm:bearer';
const SUCCESS = 'urn:oasis:names:tc:SAML:2.0:status:Success';
const SIGNATURE_ALGORITHMS = new Set([
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha384',
  'http://www.w3.org/2001/04/xmldsig-more#rsa-sha512',
]);
const DIGEST_ALGORITHMS = new Set(['http://www.w3.org/2001/04/xmlenc#sha256', 'http://www.w3.org/2001/04/xmldsig-more#sha384', 'http://www.w3.org/2001/04/xmlenc#sha512']);

export interface ValidationInput {
  connection: SamlConnection;
  spEntityId: string;
  acsUrl: string;
  skewSeconds: number;
  now?: number;
  /** The connection's SP encryption key, when it wants encrypted assertions. */
  decryptionKeyPem?: string | null;
}

interface InnerInput extends ValidationInput {
  /** Set on the second pass over a decrypted response: its Response signature was checked on the original. */
  decrypted?: { responseSignatureVerified: boolean };
}

export interface ValidatedResponse {
  responseXml: string;
  assertionId: string;
  /** InResponseTo from the signed assertion (SubjectConfirmationData); null when unsolicited. */
  inResponseTo: string | null;
  sessionIndex: string | null;
  /** Until when the assertion could be presented: the replay cache keeps its id until then. */
  replayUntil: Date;
  facts: AssertionFacts;
}

/** The SAMLResponse form field → XML text. */
export function decodeResponse(encoded: unknown): string {
  if (typeof encoded !== 'string' || !encoded) throw new SamlRejection('missing_response');
  const compact = encoded.replace(/\s+/g, '');
  if (compact.length > (MAX_RESPONSE_BYTES * 4) / 3 + 4 || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) throw new SamlRejection('malformed', 'not base64');
  const xml = Buffer.from(compact, 'base64').toString('utf8');
  refuseDtd(xml);
  return xml;
}

function time(el: Element, attr: string, required: boolean): number | undefined {
  const raw = el.getAttribute(attr);
  if (!raw) {
    if (required) throw new SamlRejection('malformed', `${el.localName} without ${attr}`);
    return undefined;
  }
  const t = Date.parse(raw);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(raw) || Number.isNaN(t)) throw new SamlRejection('malformed', `${attr} is not a dateTime`);
  return t;
}

/**
 * Verifies `signature` (a direct child of `element`) with one of `certs` and returns the
 * canonical XML it covers, which must be `element` itself (the reference is its ID).
 */
function verifiedReference(xml: string, element: Element, signature: Element, certs: string[]): string {
  const id = element.getAttribute('ID');
  if (!id) throw new SamlRejection('malformed', `${element.localName} without ID`);
  for (const der of certs) {
    // KeyInfo is never trusted: only the connection's certificate verifies.
    const sig = new SignedXml({ publicCert: certPem(der), getCertFromKeyInfo: () => null });
    sig.loadSignature(signature);
    if (!sig.signatureAlgorithm || !SIGNATURE_ALGORITHMS.has(sig.signatureAlgorithm)) throw new SamlRejection('weak_signature_algorithm');
    let ok: boolean;
    try {
      ok = sig.checkSignature(xml);
    } catch {
      ok = false;
    }
    if (!ok) continue;
    const refs = sig.getReferences();
    if (refs.length !== 1 || refs[0]!.uri !== `#${id}`) throw new SamlRejection('signature_reference');
    if (!DIGEST_ALGORITHMS.has(String(refs[0]!.digestAlgorithm))) throw new SamlRejection('weak_signature_algorithm');
    const signed = sig.getSignedReferences();
    if (signed.length !== 1) throw new SamlRejection('signature_reference');
    return signed[0]!;
  }
  throw new SamlRejection('signature');
}

/** Our own checks; throws SamlRejection with a stable reason. */
export function validateResponseXml(xml: string, input: InnerInput): ValidatedResponse {
  const { connection, spEntityId, acsUrl } = input;
  const now = input.now ?? Date.now();
  const skew = input.skewSeconds * 1000;
  const doc = parseStrict(xml);
  const response = doc.documentElement;
  if (!response || response.namespaceURI !== NS.samlp || response.localName !== 'Response') throw new SamlRejection('malformed', 'not a samlp:Response');
  if (response.getAttribute('Version') !== '2.0') throw new SamlRejection('malformed', 'not SAML 2.0');
  // Comments let an attacker split a signed value (alice@acme.com<!---->.evil.com) for parsers
  // that read the first text node; no IdP needs them, so none are accepted.
  if (hasCommentsOrPIs(doc)) throw new SamlRejection('comment');

  const all = descendants(response);
  const assertions = all.filter((e) => e.localName === 'Assertion');
  const encrypted = all.filter((e) => e.localName === 'EncryptedAssertion');
  if (encrypted.length > 0) {
    if (input.decrypted || !connection.encryptedAssertions || !input.decryptionKeyPem) throw new SamlRejection('encrypted_assertion_unexpected');
    return validateEncrypted(xml, doc, response, all, encrypted, input);
  }
  // A connection that asks for encryption gets nothing else: a plain assertion was readable on the way.
  if (connection.encryptedAssertions && !input.decrypted) throw new SamlRejection('assertion_not_encrypted');
  if (assertions.length !== 1) throw new SamlRejection('assertion_count', `found ${assertions.length}`);
  const assertion = assertions[0]!;
  if (assertion.namespaceURI !== NS.saml || assertion.parentNode !== response) throw new SamlRejection('assertion_position');
  const ids = new Set<string>();
  for (const e of all) {
    for (const name of ['ID', 'Id', 'id']) {
      const v = e.getAttribute(name);
      if (!v) continue;
      if (ids.has(v)) throw new SamlRejection('duplicate_id');
      ids.add(v);
    }
  }
  // Signatures only where the profile puts them: on the Response and on the Assertion.
  const signatures = all.filter((e) => e.localName === 'Signature');
  if (signatures.some((s) => s.namespaceURI !== NS.ds || (s.parentNode !== response && s.parentNode !== assertion))) throw new SamlRejection('signature_position');

  const status = onlyChild(response, NS.samlp, 'Status', 'malformed');
  const code = onlyChild(status, NS.samlp, 'StatusCode', 'malformed').getAttribute('Value');
  if (code !== SUCCESS) throw new SamlRejection('status', code ?? 'none');

  const certs = connection.idp.signingCerts;
  const assertionSignature = childElements(assertion, NS.ds, 'Signature');
  if (assertionSignature.length === 0) throw new SamlRejection('assertion_unsigned');
  if (assertionSignature.length > 1) throw new SamlRejection('signature_position');
  const responseSignature = childElements(response, NS.ds, 'Signature');
  if (responseSignature.length > 1) throw new SamlRejection('signature_position');
  // A Response signature, when present, must verify too (samlify would settle for either).
  if (responseSignature[0] && !input.decrypted?.responseSignatureVerified) verifiedReference(xml, response, responseSignature[0], certs);
  const signedXml = verifiedReference(xml, assertion, assertionSignature[0]!, certs);

  // Response-level fields that are only as trustworthy as the (optional) Response signature:
  // each must agree with what the signed assertion says, never replace it.
  const destination = response.getAttribute('Destination');
  if (destination !== null ? destination !== acsUrl : responseSignature.length > 0) throw new SamlRejection('destination');
  const responseIssuer = optionalChild(response, NS.saml, 'Issuer', 'malformed');
  if (responseIssuer && textOf(responseIssuer) !== connection.idp.entityId) throw new SamlRejection('issuer');

  // From here on, only the signed canonical XML.
  const signedDoc = parseStrict(signedXml);
  const a = signedDoc.documentElement;
  if (!a || a.namespaceURI !== NS.saml || a.localName !== 'Assertion' || a.getAttribute('ID') !== assertion.getAttribute('ID')) throw new SamlRejection('signature_reference');
  const assertionId = a.getAttribute('ID')!;
  if (textOf(onlyChild(a, NS.saml, 'Issuer', 'issuer')) !== connection.idp.entityId) throw new SamlRejection('issuer');

  const subject = onlyChild(a, NS.saml, 'Subject', 'subject');
  const nameIdEl = onlyChild(subject, NS.saml, 'NameID', 'subject');
  const nameId = textOf(nameIdEl);
  if (!nameId || nameId.length > 512) throw new SamlRejection('subject');

  // A bearer confirmation addressed to this ACS, still valid.
  const confirmations = childElements(subject, NS.saml, 'SubjectConfirmation').filter((c) => c.getAttribute('Method') === BEARER);
  if (confirmations.length === 0) throw new SamlRejection('subject_confirmation');
  const data = confirmations.map((c) => onlyChild(c, NS.saml, 'SubjectConfirmationData', 'subject_confirmation'));
  const forUs = data.filter((d) => d.getAttribute('Recipient') === acsUrl);
  if (forUs.length === 0) throw new SamlRejection('recipient');
  const scd = forUs[0]!;
  const scdNotOnOrAfter = time(scd, 'NotOnOrAfter', true)!;
  if (now - skew >= scdNotOnOrAfter) throw new SamlRejection('expired', 'SubjectConfirmationData');
  const scdNotBefore = time(scd, 'NotBefore', false);
  if (scdNotBefore !== undefined && now + skew < scdNotBefore) throw new SamlRejection('not_yet_valid', 'SubjectConfirmationData');
  const inResponseTo = scd.getAttribute('InResponseTo') || null;
  const responseInResponseTo = response.getAttribute('InResponseTo') || null;
  if (responseInResponseTo !== null && responseInResponseTo !== inResponseTo) throw new SamlRejection('in_response_to', 'Response and assertion disagree');

  const conditions = onlyChild(a, NS.saml, 'Conditions', 'conditions');
  const notBefore = time(conditions, 'NotBefore', false);
  const notOnOrAfter = time(conditions, 'NotOnOrAfter', false);
  if (notBefore !== undefined && now + skew < notBefore) throw new SamlRejection('not_yet_valid');
  if (notOnOrAfter !== undefined && now - skew >= notOnOrAfter) throw new SamlRejection('expired');
  const restrictions = childElements(conditions, NS.saml, 'AudienceRestriction');
  if (restrictions.length === 0 || !restrictions.every((r) => childElements(r, NS.saml, 'Audience').some((aud) => textOf(aud) === spEntityId))) {
    throw new SamlRejection('audience');
  }

  const authn = childElements(a, NS.saml, 'AuthnStatement');
  if (authn.length === 0) throw new SamlRejection('authn_statement');
  const sessionNotOnOrAfter = time(authn[0]!, 'SessionNotOnOrAfter', false);
  if (sessionNotOnOrAfter !== undefined && now - skew >= sessionNotOnOrAfter) throw new SamlRejection('expired', 'session');
  const context = optionalChild(authn[0]!, NS.saml, 'AuthnContext', 'authn_statement');
  const classRef = context ? optionalChild(context, NS.saml, 'AuthnContextClassRef', 'authn_statement') : undefined;

  const attributes: Record<string, string[]> = {};
  for (const statement of childElements(a, NS.saml, 'AttributeStatement')) {
    for (const attr of childElements(statement, NS.saml, 'Attribute')) {
      const name = attr.getAttribute('Name');
      if (!name) continue;
      attributes[name] = [...(attributes[name] ?? []), ...childElements(attr, NS.saml, 'AttributeValue').map(textOf)];
    }
  }

  return {
    responseXml: xml,
    assertionId,
    inResponseTo,
    sessionIndex: authn[0]!.getAttribute('SessionIndex') || null,
    replayUntil: new Date(Math.max(scdNotOnOrAfter, notOnOrAfter ?? 0) + skew),
    facts: { nameId, nameIdFormat: nameIdEl.getAttribute('Format') || null, attributes, authnContextClassRef: classRef ? textOf(classRef) : null },
  };
}

/**
 * A Response carrying one EncryptedAssertion: its Response signature (if any) is checked over
 * the message as received (it covers the ciphertext), the assertion is decrypted and put in the
 * EncryptedAssertion's place, and the result goes through every check a plain response does,
 * including the assertion's own signature (decryption proves nothing about who wrote it).
 */
function validateEncrypted(xml: string, doc: Document, response: Element, all: Element[], encrypted: Element[], input: InnerInput): ValidatedResponse {
  if (encrypted.length !== 1 || all.some((e) => e.localName === 'Assertion')) throw new SamlRejection('assertion_count', `found ${encrypted.length} encrypted`);
  const element = encrypted[0]!;
  if (element.namespaceURI !== NS.saml || element.parentNode !== response) throw new SamlRejection('assertion_position');
  const signatures = all.filter((e) => e.localName === 'Signature');
  if (signatures.some((s) => s.namespaceURI !== NS.ds || s.parentNode !== response)) throw new SamlRejection('signature_position');
  const responseSignature = childElements(response, NS.ds, 'Signature');
  if (responseSignature.length > 1) throw new SamlRejection('signature_position');
  if (responseSignature[0]) verifiedReference(xml, response, responseSignature[0], input.connection.idp.signingCerts);
  const plain = decryptAssertion(element, input.decryptionKeyPem!);
  let assertion: Element | null;
  try {
    assertion = parseStrict(plain).documentElement;
  } catch {
    throw new SamlRejection('decryption');
  }
  if (!assertion || assertion.namespaceURI !== NS.saml || assertion.localName !== 'Assertion') throw new SamlRejection('decryption');
  response.replaceChild(doc.importNode(assertion, true), element);
  const decryptedXml = new XMLSerializer().serializeToString(doc as never);
  return validateResponseXml(decryptedXml, { ...input, decrypted: { responseSignatureVerified: responseSignature.length > 0 } });
}
