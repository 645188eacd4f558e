// Small, audited-by-reading wrappers over node:crypto. Everything that hashes, encrypts or
// compares secrets goes through here so the algorithms are chosen in one place.
import crypto from 'node:crypto';

export function sha256Hex(value: string | Buffer): string {
  return crypto.createHash('sha256').update(value).digest('hex');
}

export function randomToken(bytes = 32): string {
  return crypto.randomBytes(bytes).toString('base64url');
}

export function constantTimeEqual(a: string, b: string): boolean {
  // Hash first so lengths match and the comparison leaks nothing about either value.
  const ha = crypto.createHash('sha256').update(a).digest();
  const hb = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(ha, hb) && a.length === b.length;
}

/** HKDF-SHA256 sub-key for one purpose, so one root secret never encrypts two kinds of data. */
export function deriveKey(rootSecret: string, purpose: string, length = 32): Buffer {
  return Buffer.from(crypto.hkdfSync('sha256', rootSecret, 'latchkey', purpose, length));
}

const GCM_IV_BYTES = 12;

/** AES-256-GCM; output is `v1.<iv>.<tag>.<ciphertext>` in base64url. `aad` binds the ciphertext to its context. */
export function encrypt(key: Buffer, plaintext: string, aad = ''): string {
  const iv = crypto.randomBytes(GCM_IV_BYTES);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), ct.toString('base64url')].join('.');
}

export function decrypt(key: Buffer, sealed: string, aad = ''): string {
  const [version, iv, tag, ct] = sealed.split('.');
  if (version !== 'v1' || !iv || !tag || ct === undefined) throw new Error('unsupported ciphertext format');
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
  decipher.setAAD(Buffer.from(aad));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8');
}
