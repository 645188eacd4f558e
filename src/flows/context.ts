// What every flow is given: services, never globals.
import type Provider from 'oidc-provider';
import type { Config } from '../config.ts';
import type { Db } from '../db/knex.ts';
import type { Views } from '../http/views.ts';
import type { PasswordMethod } from '../methods/password/index.ts';
import type { AssurancePolicy } from '../oidc/assurance.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Audit } from '../security/audit.ts';

export interface FlowDeps {
  config: Config;
  db: Db;
  views: Views;
  audit: Audit;
  metrics: Metrics;
  password: PasswordMethod;
  assurance: AssurancePolicy;
  /** The live provider (it is rebuilt when signing keys rotate). */
  provider(): Provider;
}
