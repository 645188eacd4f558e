// XML plumbing for the SAML bridge: strict parsing (no DTDs, no entities, no comments or
// processing instructions inside messages), namespace-exact element lookups, and the SAML
// schema validator that samlify calls (xmllint compiled to WebAssembly: installs from npm, no JDK).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DOMParser } from '@xmldom/xmldom';
import { validateXML } from 'xmllint-wasm';

export const NS = {
  samlp: 'urn:oasis:names:tc:SAML:2.0:protocol',
  saml: 'urn:oasis:names:tc:SAML:2.0:assertion',
  md: 'urn:oasis:names:tc:SAML:2.0:metadata',
  ds: 'http://www.w3.org/2000/09/xmldsig#',
  xenc: 'http://www.w3.org/2001/04/xmlenc#',
} as const;

/** Why a SAML message was refused: `reason` is a stable code (audited), never XML or a stack. */
export class SamlRejection extends Error {
  readonly reason: string;
  constructor(reason: string, detail?: string) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.reason = reason;
  }
}

/** DOCTYPE or entity declarations are refused before any parser sees the text (XXE, billion laughs). */
export function refuseDtd(xml: string): void {
  if (/<!DOCTYPE|<!ENTITY|<!ELEMENT|<!ATTLIST/i.test(xml)) throw new SamlRejection('doctype');
}

/** Parses after refuseDtd; any parser warning or error is a refusal. */
export function parseStrict(xml: string): Document {
  refuseDtd(xml);
  const fail = (msg: string) => {
    throw new SamlRejection('malformed', msg.split('\n')[0]?.slice(0, 120));
  };
  try {
    return new DOMParser({ errorHandler: { warning: fail, error: fail, fatalError: fail } }).parseFromString(xml, 'text/xml') as unknown as Document;
  } catch (err) {
    if (err instanceof SamlRejection) throw err;
    throw new SamlRejection('malformed');
  }
}

export function childElements(parent: Node, ns: string, localName: string): Element[] {
  const out: Element[] = [];
  for (let n = parent.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === 1 && (n as Element).namespaceURI === ns && (n as Element).localName === localName) out.push(n as Element);
  }
  return out;
}

/** Exactly one child element, else a refusal with `reason`. */
export function onlyChild(parent: Node, ns: string, localName: string, reason: string): Element {
  const found = childElements(parent, ns, localName);
  if (found.length !== 1) throw new SamlRejection(reason, `expected one ${localName}, found ${found.length}`);
  return found[0]!;
}

export function optionalChild(parent: Node, ns: string, localName: string, reason: string): Element | undefined {
  const found = childElements(parent, ns, localName);
  if (found.length > 1) throw new SamlRejection(reason, `more than one ${localName}`);
  return found[0];
}

/** Every descendant element (document order). */
export function descendants(root: Node): Element[] {
  const out: Element[] = [];
  const stack: Node[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    if (node.nodeType === 1) out.push(node as Element);
    const kids: Node[] = [];
    for (let n = node.firstChild; n; n = n.nextSibling) kids.push(n);
    stack.push(...kids.reverse());
  }
  return out;
}

/** True when the tree holds a comment or processing instruction anywhere below `root`. */
export function hasCommentsOrPIs(root: Node): boolean {
  const stack: Node[] = [root];
  while (stack.length) {
    const node = stack.pop()!;
    if (node.nodeType === 7 || node.nodeType === 8) return true;
    for (let n = node.firstChild; n; n = n.nextSibling) stack.push(n);
  }
  return false;
}

/** The text of an element: all of its text, never just the first node. */
export function textOf(el: Element): string {
  return (el.textContent ?? '').trim();
}

const SCHEMA_DIR = path.join(path.dirname(fileURLToPath(import.meta.resolve('@authenio/samlify-xmllint-wasm'))), 'schemas');
const SCHEMA_FILES = ['saml-schema-protocol-2.0.xsd', 'datatypes.dtd', 'saml-schema-assertion-2.0.xsd', 'xmldsig-core-schema.xsd', 'XMLSchema.dtd', 'xenc-schema.xsd'];
let schemas: { fileName: string; contents: string }[] | undefined;

/**
 * The SAML protocol schema check samlify requires. The schemas are the ones
 * @authenio/samlify-xmllint-wasm ships; we call its engine ourselves so a failure is one quiet
 * exception rather than the XML (with personal data) printed to the console.
 */
export async function validateSchema(xml: string): Promise<true> {
  refuseDtd(xml);
  schemas ??= SCHEMA_FILES.map((fileName) => ({ fileName, contents: fs.readFileSync(path.join(SCHEMA_DIR, fileName), 'utf8') }));
  const [schema, ...preload] = schemas;
  const result = await validateXML({ xml: [{ fileName: 'message.xml', contents: xml }], extension: 'schema', schema: [schema!.contents], preload });
  if (!result.valid) throw new SamlRejection('schema');
  return true;
}
