// The only module that reads the environment. Everything else receives a typed Config.
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (def: number) => z.coerce.number().int().nonnegative().default(def);

const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: int(3000),
  HOST: z.string().default('0.0.0.0'),
  ISSUER: z.url().optional(),
  DATABASE_URL: z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL').optional(),
  // Default: 2 × CPU cores + 1 (each query holds a connection only while it runs), shared out among
  // the worker processes of `serve --workers N` (see poolMax).
  DATABASE_POOL_MAX: z.coerce.number().int().min(1).optional(),
  // Server processes of `serve` (node:cluster workers on one port). Default: one per CPU core on
  // PostgreSQL; the embedded database can be opened by one process only, so 1 there.
  WORKERS: z.coerce.number().int().min(1).max(256).optional(),
  DATA_DIR: z.string().default('./data'),
  LATCHKEY_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  COOKIE_SECRETS: z.string().optional(),
  TRUST_PROXY: bool.default(false),
  // Proxies in front of us that append to X-Forwarded-For: the client IP is the entry they added.
  TRUST_PROXY_HOPS: z.coerce.number().int().min(1).default(1),
  METRICS_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PRODUCT_NAME: z.string().default('Latchkey'),
  THEME_DIR: z.string().optional(),
  BODY_LIMIT: z.string().default('64kb'),
  ARGON2_MEMORY_KIB: int(19456),
  ARGON2_TIME_COST: int(2),
  ARGON2_PARALLELISM: int(1),
  // Hashes in flight at once (default: one per CPU core) and sign-ins allowed to wait for one (default:
  // 4 per hash in flight); beyond that a sign-in is refused at once with 503 and Retry-After.
  ARGON2_MAX_CONCURRENCY: z.coerce.number().int().min(1).optional(),
  ARGON2_MAX_QUEUE: z.coerce.number().int().nonnegative().optional(),
  // Nice value of the threads that hash passwords (Linux): below the event loop, so a sign-in
  // flood does not slow token requests. 0 leaves them as they are.
  ARGON2_NICE: z.coerce.number().int().min(0).max(19).default(10),
  PASSWORD_MIN_LENGTH: int(8),
  ACCESS_TOKEN_TTL: int(3600),
  ID_TOKEN_TTL: int(3600),
  REFRESH_TOKEN_TTL: int(14 * 24 * 3600),
  SESSION_TTL: int(14 * 24 * 3600),
  // Browser sessions end after this long unused (SESSION_REMEMBER_TTL when "Keep me signed in" was
  // ticked; SESSION_TTL is its older name), and SESSION_MAX_TTL after the sign-in, whichever first.
  SESSION_IDLE_TTL: z.coerce.number().int().min(1).default(30 * 60),
  SESSION_REMEMBER_TTL: z.coerce.number().int().min(1).optional(),
  SESSION_MAX_TTL: z.coerce.number().int().min(1).default(30 * 24 * 3600),
  GRANT_TTL: int(365 * 24 * 3600),
  INTERACTION_TTL: int(3600),
  SWEEP_INTERVAL: int(300),
  KEY_CHECK_INTERVAL: z.coerce.number().int().min(1).default(30),
  ACR_PWD: z.string().default('urn:latchkey:acr:pwd'),
  ACR_MFA: z.string().default('urn:latchkey:acr:mfa'),
  ACR_PHR: z.string().default('urn:latchkey:acr:phr'),
  STEP_UP_TTL: int(900),
  STEP_UP_TTL_MFA: z.coerce.number().int().nonnegative().optional(),
  STEP_UP_TTL_PHR: z.coerce.number().int().nonnegative().optional(),
  STEP_UP_ENROLL: z.enum(['inline', 'deny']).default('inline'),
  RECENT_AUTH_TTL: int(300),
  WEBAUTHN_RP_ID: z.string().optional(),
  WEBAUTHN_ORIGIN: z.url().optional(),
  WEBAUTHN_RP_NAME: z.string().optional(),
  LOGIN_RATE_LIMIT_PER_IP: int(30),
  LOGIN_RATE_LIMIT_PER_ACCOUNT: int(10),
  FACTOR_RATE_LIMIT_PER_ATTEMPT: z.coerce.number().int().min(1).default(5),
  FACTOR_RATE_LIMIT_PER_USER: z.coerce.number().int().min(1).default(20),
  REAUTH_MAX_FAILURES: z.coerce.number().int().min(1).default(5),
  SIGNUP_RATE_LIMIT_PER_IP: z.coerce.number().int().min(1).default(10),
  // SCIM requests with a missing or wrong bearer token, per client IP per 15 minutes.
  SCIM_RATE_LIMIT_PER_IP: z.coerce.number().int().min(1).default(20),
  REFRESH_REUSE_GRACE: int(5),
  // Outbound requests to URLs clients or operators supply: exact origins exempt from the private-address refusal.
  OUTBOUND_ALLOW_ORIGINS: z.string().default('').refine((v) => v.split(',').map((o) => o.trim()).filter(Boolean).every((o) => URL.canParse(o)), 'must be comma-separated origins such as http://127.0.0.1:4100'),
  SAML_CLOCK_SKEW: int(120),
  DELETION_GRACE_DAYS: int(30),
  DELETION_MAX_AGE: int(300),
  // Security Event Token delivery (RFC 8935): outbox polling and retries with backoff.
  EVENTS_POLL_INTERVAL: z.coerce.number().int().min(1).default(10),
  EVENTS_RETRY_BASE: z.coerce.number().int().min(1).default(30),
  EVENTS_RETRY_MAX_DELAY: z.coerce.number().int().min(1).default(3600),
  EVENTS_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(10),
  // Mail: transport, outbox retries, emailed-link lifetimes, verification policy, mail rate limits.
  SMTP_URL: z.string().regex(/^smtps?:\/\//, 'must be an smtp:// or smtps:// URL').optional(),
  MAIL_TRANSPORT: z.enum(['smtp', 'log']).optional(),
  MAIL_FROM: z.string().optional(),
  MAIL_POLL_INTERVAL: z.coerce.number().int().min(1).default(10),
  MAIL_RETRY_BASE: z.coerce.number().int().min(1).default(30),
  MAIL_RETRY_MAX_DELAY: z.coerce.number().int().min(1).default(3600),
  MAIL_MAX_ATTEMPTS: z.coerce.number().int().min(1).default(10),
  VERIFY_EMAIL_TTL: z.coerce.number().int().min(1).default(24 * 3600),
  RESET_PASSWORD_TTL: z.coerce.number().int().min(1).default(30 * 60),
  MAGIC_LINK_TTL: z.coerce.number().int().min(1).default(15 * 60),
  EMAIL_CHANGE_TTL: z.coerce.number().int().min(1).default(24 * 3600),
  EMAIL_CHANGE_REPORT_TTL: z.coerce.number().int().min(1).default(7 * 24 * 3600),
  UNVERIFIED_TTL: z.coerce.number().int().min(1).default(7 * 24 * 3600),
  MAGIC_LINK_SIGNUP: bool.default(false),
  MAIL_RATE_LIMIT_PER_IP: z.coerce.number().int().min(1).default(20),
  MAIL_RATE_LIMIT_PER_ADDRESS: z.coerce.number().int().min(1).default(5),
  MAIL_RATE_LIMIT_WINDOW: z.coerce.number().int().min(1).default(3600),
});

export type Config = ReturnType<typeof buildConfig>;

export class ConfigError extends Error {}

/**
 * argon2 work in flight at once and allowed to wait (methods/password): sized to the CPU cores,
 * which the worker processes of one server share.
 */
function argon2Pool(maxConcurrency: number | undefined, maxQueue: number | undefined, workers: number) {
  const concurrency = maxConcurrency ?? Math.max(1, Math.ceil(os.availableParallelism() / workers));
  return { maxConcurrency: concurrency, maxQueue: maxQueue ?? 4 * concurrency };
}

/**
 * Connections per process: 2 × CPU cores + 1 for one process; N workers share that budget (at
 * least 4 each: a request, a job tick and the audit sealer may each hold one), so N copies do
 * not multiply the load on PostgreSQL's max_connections.
 */
function poolMax(explicit: number | undefined, workers: number): number {
  const total = 2 * os.availableParallelism() + 1;
  return explicit ?? (workers === 1 ? total : Math.max(4, Math.ceil(total / workers)));
}

function buildConfig(env: z.infer<typeof envSchema>, overrides: ConfigOverrides) {
  const workers = overrides.workers ?? env.WORKERS ?? (env.DATABASE_URL ? os.availableParallelism() : 1);
  const issuer = (env.ISSUER ?? `http://localhost:${env.PORT}`).replace(/\/+$/, '');
  const production = env.NODE_ENV === 'production';
  if (production && !env.LATCHKEY_SECRET) {
    throw new ConfigError('LATCHKEY_SECRET is required when NODE_ENV=production (at least 32 random characters)');
  }
  const mailTransport = env.MAIL_TRANSPORT ?? (env.SMTP_URL ? 'smtp' : 'log');
  if (mailTransport === 'smtp' && !env.SMTP_URL) throw new ConfigError('MAIL_TRANSPORT=smtp needs SMTP_URL');
  // The log transport prints live sign-in and reset links: never by accident in production.
  if (production && !env.SMTP_URL && env.MAIL_TRANSPORT !== 'log') {
    throw new ConfigError('SMTP_URL is required when NODE_ENV=production (or set MAIL_TRANSPORT=log to print mail to the log on purpose)');
  }
  return {
    env: env.NODE_ENV,
    production,
    port: env.PORT,
    host: env.HOST,
    issuer,
    secureCookies: issuer.startsWith('https://'),
    databaseUrl: env.DATABASE_URL,
    databasePoolMax: poolMax(env.DATABASE_POOL_MAX, workers),
    /** Server processes `serve` runs (WORKERS, or `serve --workers N`); checked against the embedded database by `serve`. */
    workers,
    dataDir: path.resolve(env.DATA_DIR),
    rootSecret: env.LATCHKEY_SECRET,
    cookieSecrets: env.COOKIE_SECRETS?.split(',').map((s) => s.trim()).filter(Boolean),
    trustProxy: env.TRUST_PROXY,
    trustProxyHops: env.TRUST_PROXY_HOPS,
    metricsToken: env.METRICS_TOKEN,
    logLevel: env.LOG_LEVEL,
    productName: env.PRODUCT_NAME,
    themeDir: env.THEME_DIR ? path.resolve(env.THEME_DIR) : undefined,
    bodyLimit: env.BODY_LIMIT,
    argon2: { memoryCost: env.ARGON2_MEMORY_KIB, timeCost: env.ARGON2_TIME_COST, parallelism: env.ARGON2_PARALLELISM },
    argon2Pool: argon2Pool(env.ARGON2_MAX_CONCURRENCY, env.ARGON2_MAX_QUEUE, workers),
    argon2Nice: env.ARGON2_NICE,
    password: { minLength: env.PASSWORD_MIN_LENGTH, maxLength: 128 },
    ttl: {
      accessToken: env.ACCESS_TOKEN_TTL,
      idToken: env.ID_TOKEN_TTL,
      refreshToken: env.REFRESH_TOKEN_TTL,
      session: env.SESSION_REMEMBER_TTL ?? env.SESSION_TTL,
      grant: env.GRANT_TTL,
      interaction: env.INTERACTION_TTL,
    },
    sweepIntervalSeconds: env.SWEEP_INTERVAL,
    keyCheckIntervalSeconds: env.KEY_CHECK_INTERVAL,
    acr: { pwd: env.ACR_PWD, mfa: env.ACR_MFA, phr: env.ACR_PHR },
    stepUp: {
      ttl: { mfa: env.STEP_UP_TTL_MFA ?? env.STEP_UP_TTL, phr: env.STEP_UP_TTL_PHR ?? env.STEP_UP_TTL },
      enroll: env.STEP_UP_ENROLL,
    },
    recentAuthSeconds: env.RECENT_AUTH_TTL,
    /** Browser session timeouts in seconds: idle (short, or long when remembered) and absolute. */
    sessionTimeouts: { idle: env.SESSION_IDLE_TTL, rememberIdle: env.SESSION_REMEMBER_TTL ?? env.SESSION_TTL, max: env.SESSION_MAX_TTL },
    // Passkeys are bound to a domain (never an IP) and an origin; both default to the issuer's.
    webauthn: {
      rpId: env.WEBAUTHN_RP_ID ?? new URL(issuer).hostname,
      origin: env.WEBAUTHN_ORIGIN ?? new URL(issuer).origin,
      rpName: env.WEBAUTHN_RP_NAME ?? env.PRODUCT_NAME,
    },
    rateLimits: {
      loginPerIp: env.LOGIN_RATE_LIMIT_PER_IP,
      loginPerAccount: env.LOGIN_RATE_LIMIT_PER_ACCOUNT,
      factorPerAttempt: env.FACTOR_RATE_LIMIT_PER_ATTEMPT,
      factorPerUser: env.FACTOR_RATE_LIMIT_PER_USER,
      reauthMaxFailures: env.REAUTH_MAX_FAILURES,
      signupPerIp: env.SIGNUP_RATE_LIMIT_PER_IP,
      scimPerIp: env.SCIM_RATE_LIMIT_PER_IP,
    },
    outboundAllowOrigins: env.OUTBOUND_ALLOW_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean),
    saml: { clockSkewSeconds: env.SAML_CLOCK_SKEW },
    deletion: { graceDays: env.DELETION_GRACE_DAYS, maxAgeSeconds: env.DELETION_MAX_AGE },
    events: {
      pollIntervalSeconds: env.EVENTS_POLL_INTERVAL,
      retry: { baseSeconds: env.EVENTS_RETRY_BASE, maxDelaySeconds: env.EVENTS_RETRY_MAX_DELAY, maxAttempts: env.EVENTS_MAX_ATTEMPTS },
    },
    /** Seconds after a refresh token's rotation in which presenting it again is a retry, not reuse. */
    refreshReuseGraceSeconds: env.REFRESH_REUSE_GRACE,
    mail: {
      smtpUrl: env.SMTP_URL,
      transport: mailTransport,
      /** A full From header (`Name <addr>`) or, by default, the product name at no-reply@<issuer host>. */
      from: env.MAIL_FROM ?? { name: env.PRODUCT_NAME, address: `no-reply@${new URL(issuer).hostname}` },
      pollIntervalSeconds: env.MAIL_POLL_INTERVAL,
      retry: { baseSeconds: env.MAIL_RETRY_BASE, maxDelaySeconds: env.MAIL_RETRY_MAX_DELAY, maxAttempts: env.MAIL_MAX_ATTEMPTS },
      rateLimit: { perIp: env.MAIL_RATE_LIMIT_PER_IP, perAddress: env.MAIL_RATE_LIMIT_PER_ADDRESS, windowSeconds: env.MAIL_RATE_LIMIT_WINDOW },
    },
    /** Lifetime in seconds of each kind of emailed link. */
    linkTtl: {
      verifyEmail: env.VERIFY_EMAIL_TTL,
      resetPassword: env.RESET_PASSWORD_TTL,
      magicLink: env.MAGIC_LINK_TTL,
      emailChange: env.EMAIL_CHANGE_TTL,
      emailChangeReport: env.EMAIL_CHANGE_REPORT_TTL,
    },
    unverifiedTtlSeconds: env.UNVERIFIED_TTL,
    magicLinkSignup: env.MAGIC_LINK_SIGNUP,
  };
}

/** Settings given on the command line, which win over the environment (`serve --workers N`). */
export interface ConfigOverrides {
  workers?: number;
}

export function loadConfig(source: NodeJS.ProcessEnv = process.env, overrides: ConfigOverrides = {}): Config {
  // Empty strings mean "unset" (docker-compose often passes VAR= for optional values).
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return buildConfig(parsed.data, overrides);
}
