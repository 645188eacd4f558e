// EncryptedAssertion (XML Encryption 1.1) → the Assertion inside, with our connection's SP
// encryption key. Only RSA-OAEP transports the content key (RSA1_5 is refused: Bleichenbacher's
// oracle, Jager & Somorovsky 2012); the content is AES-GCM or AES-CBC. Every failure after the
// algorithm checks is one reason ('decryption'), so no padding or parsing oracle is audited
// apart. What comes out is validated exactly like a plain assertion, signature included.
import crypto from 'node:crypto';
import { NS, SamlRejection, childElements, onlyChild, optionalChild, textOf } from './xml.ts';

const RSA_OAEP_MGF1P = 'http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p';
const RSA_OAEP_11 = 'http://www.w3.org/2009/xmlenc11#rsa-oaep';
const RSA_1_5 = 'http://www.w3.org/2001/04/xmlenc#rsa-1_5';
const XENC11 = 'http://www.w3.org/2009/xmlenc11#';

const CONTENT: Record<string, { cipher: string; keyBytes: number; gcm: boolean }> = {
  'http://www.w3.org/2009/xmlenc11#aes256-gcm': { cipher: 'aes-256-gcm', keyBytes: 32, gcm: true },
  'http://www.w3.org/2009/xmlenc11#aes128-gcm': { cipher: 'aes-128-gcm', keyBytes: 16, gcm: true },
  'http://www.w3.org/2001/04/xmlenc#aes256-cbc': { cipher: 'aes-256-cbc', keyBytes: 32, gcm: false },
  'http://www.w3.org/2001/04/xmlenc#aes128-cbc': { cipher: 'aes-128-cbc', keyBytes: 16, gcm: false },
};
const DIGESTS: Record<string, string> = {
  'http://www.w3.org/2000/09/xmldsig#sha1': 'sha1',
  'http://www.w3.org/2001/04/xmlenc#sha256': 'sha256',
  'http://www.w3.org/2001/04/xmlenc#sha512': 'sha512',
};
const MGFS: Record<string, string> = {
  'http://www.w3.org/2009/xmlenc11#mgf1sha1': 'sha1',
  'http://www.w3.org/2009/xmlenc11#mgf1sha256': 'sha256',
  'http://www.w3.org/2009/xmlenc11#mgf1sha512': 'sha512',
};

/** What our SP metadata offers, strongest first. */
export const ENCRYPTION_METHODS = [...Object.keys(CONTENT), RSA_OAEP_11, RSA_OAEP_MGF1P];

function algorithmOf(parent: Element, ns: string): string {
  return onlyChild(parent, ns, 'EncryptionMethod', 'encryption_malformed').getAttribute('Algorithm') ?? '';
}

function cipherValue(parent: Element): Buffer {
  const data = onlyChild(parent, NS.xenc, 'CipherData', 'encryption_malformed');
  const value = textOf(onlyChild(data, NS.xenc, 'CipherValue', 'encryption_malformed')).replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(value)) throw new SamlRejection('encryption_malformed');
  return Buffer.from(value, 'base64');
}

/** The one EncryptedKey: inside EncryptedData's KeyInfo, or beside EncryptedData. */
function encryptedKeyOf(encryptedAssertion: Element, encryptedData: Element): Element {
  const found: Element[] = [];
  for (const ki of childElements(encryptedData, NS.ds, 'KeyInfo')) found.push(...childElements(ki, NS.xenc, 'EncryptedKey'));
  found.push(...childElements(encryptedAssertion, NS.xenc, 'EncryptedKey'));
  if (found.length !== 1) throw new SamlRejection('encryption_malformed', `expected one EncryptedKey, found ${found.length}`);
  return found[0]!;
}

/** The RSA-OAEP parameters of an EncryptedKey; anything else is refused before any decryption. */
function oaepHash(encryptedKey: Element): string {
  const method = onlyChild(encryptedKey, NS.xenc, 'EncryptionMethod', 'encryption_malformed');
  const algorithm = method.getAttribute('Algorithm');
  if (algorithm === RSA_1_5) throw new SamlRejection('weak_encryption_algorithm', 'rsa-1_5');
  if (algorithm !== RSA_OAEP_MGF1P && algorithm !== RSA_OAEP_11) throw new SamlRejection('weak_encryption_algorithm', String(algorithm).slice(0, 80));
  const digestEl = optionalChild(method, NS.ds, 'DigestMethod', 'encryption_malformed');
  const digest = digestEl ? DIGESTS[digestEl.getAttribute('Algorithm') ?? ''] : 'sha1';
  const mgfEl = algorithm === RSA_OAEP_11 ? optionalChild(method, XENC11, 'MGF', 'encryption_malformed') : undefined;
  const mgf = mgfEl ? MGFS[mgfEl.getAttribute('Algorithm') ?? ''] : 'sha1';
  if (optionalChild(method, NS.xenc, 'OAEPparams', 'encryption_malformed')) throw new SamlRejection('encryption_malformed', 'OAEPparams');
  // Node's OAEP uses one hash for the label digest and MGF1; mixed pairs are not offered by us.
  if (!digest || !mgf || digest !== mgf) throw new SamlRejection('weak_encryption_algorithm', 'OAEP digest');
  return digest;
}

/** Decrypts one saml:EncryptedAssertion element; returns the plaintext (an Assertion's XML). */
export function decryptAssertion(encryptedAssertion: Element, privateKeyPem: string): string {
  const encryptedData = onlyChild(encryptedAssertion, NS.xenc, 'EncryptedData', 'encryption_malformed');
  const content = CONTENT[algorithmOf(encryptedData, NS.xenc)];
  if (!content) throw new SamlRejection('weak_encryption_algorithm', 'content');
  const encryptedKey = encryptedKeyOf(encryptedAssertion, encryptedData);
  const hash = oaepHash(encryptedKey);
  const wrapped = cipherValue(encryptedKey);
  const data = cipherValue(encryptedData);
  try {
    const key = crypto.privateDecrypt({ key: privateKeyPem, padding: crypto.constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash }, wrapped);
    if (key.length !== content.keyBytes) throw new Error('key length');
    let plain: Buffer;
    if (content.gcm) {
      if (data.length < 12 + 16) throw new Error('short');
      const decipher = crypto.createDecipheriv(content.cipher as crypto.CipherGCMTypes, key, data.subarray(0, 12));
      decipher.setAuthTag(data.subarray(data.length - 16));
      plain = Buffer.concat([decipher.update(data.subarray(12, data.length - 16)), decipher.final()]);
    } else {
      if (data.length < 32 || data.length % 16 !== 0) throw new Error('short');
      const decipher = crypto.createDecipheriv(content.cipher, key, data.subarray(0, 16)).setAutoPadding(false);
      const padded = Buffer.concat([decipher.update(data.subarray(16)), decipher.final()]);
      // XML Encryption's padding: the last byte says how many bytes to drop (the others are arbitrary).
      const pad = padded[padded.length - 1]!;
      if (pad < 1 || pad > 16) throw new Error('padding');
      plain = padded.subarray(0, padded.length - pad);
    }
    return plain.toString('utf8');
  } catch {
    throw new SamlRejection('decryption');
  }
}
