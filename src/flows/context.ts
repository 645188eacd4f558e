// What every flow is given: services, never globals.
import type Provider from 'oidc-provider';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import type { Views } from '../http/views.ts';
import type { Mailer } from '../mail/index.ts';
import type { PasswordMethod } from '../methods/password/index.ts';
import type { PasskeyMethod } from '../methods/passkey/index.ts';
import type { RecoveryCodeMethod } from '../methods/recovery-code/index.ts';
import type { FactorRegistry } from '../methods/registry.ts';
import type { TotpMethod } from '../methods/totp/index.ts';
import type { LoginThrottle } from '../security/login-throttle.ts';
import type { AssurancePolicy } from '../assurance/index.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Audit } from '../security/audit.ts';

export type SecurityNotice = 'recovery-code-used' | 'factor-changed';

export interface FlowDeps {
  config: Config;
  db: Db;
  views: Views;
  audit: Audit;
  metrics: Metrics;
  password: PasswordMethod;
  totp: TotpMethod;
  recoveryCodes: RecoveryCodeMethod;
  passkeys: PasskeyMethod;
  factors: FactorRegistry;
  loginThrottle: LoginThrottle;
  /** Mail: outbox-backed sending and absolute links (see src/mail). */
  mail: Mailer;
  /** Tells the user about a security event on their account by mail (set once mail exists). */
  notify?: (user: { id: string; email: string; name: string | null }, event: SecurityNotice, vars: Record<string, unknown>) => Promise<void>;
  assurance: AssurancePolicy;
  /** The live provider (it is rebuilt when signing keys rotate). */
  provider(): Provider;
}
