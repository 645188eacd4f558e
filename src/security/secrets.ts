// Root secret handling: one secret, sub-keys derived per purpose.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Logger } from '../observability/logger.ts';
import { deriveKey, randomToken } from './crypto.ts';

export interface Secrets {
  /** AES-256-GCM key for data at rest (signing keys, client secrets, TOTP secrets). */
  atRestKey: Buffer;
  /** Cookie signing keys: the first signs, all verify (rotation). */
  cookieKeys: string[];
  /** HMAC key for CSRF tokens. */
  csrfKey: Buffer;
  /** HMAC key for device cookies (browsers known to an account, see login-throttle.ts). */
  deviceKey: Buffer;
  /** HMAC key for references to personal data in audit events (e.g. a typed email address). */
  auditRefKey: Buffer;
}

const SECRET_FILE = 'latchkey-secret';

function developmentSecret(config: Config, log: Logger): string {
  const file = path.join(config.dataDir, SECRET_FILE);
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  fs.mkdirSync(config.dataDir, { recursive: true });
  const secret = randomToken(48);
  // 'wx' fails if another process created it meanwhile; then we read theirs.
  try {
    fs.writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return fs.readFileSync(file, 'utf8').trim();
    throw err;
  }
  log.warn(
    { event: 'secret.generated', file },
    '!!! LATCHKEY_SECRET is not set: generated a development secret and stored it in DATA_DIR. Set LATCHKEY_SECRET in production. !!!',
  );
  return secret;
}

export function loadSecrets(config: Config, log: Logger): Secrets {
  const root = config.rootSecret ?? developmentSecret(config, log);
  const cookieKeys = config.cookieSecrets?.length
    ? config.cookieSecrets
    : [deriveKey(root, 'cookie-signing').toString('base64url')];
  return {
    atRestKey: deriveKey(root, 'at-rest-encryption'),
    cookieKeys,
    csrfKey: deriveKey(root, 'csrf'),
    deviceKey: deriveKey(root, 'device-cookie'),
    auditRefKey: deriveKey(root, 'audit-ref'),
  };
}
