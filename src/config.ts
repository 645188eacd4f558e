// The only module that reads the environment. Everything else receives a typed Config.
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
  DATABASE_POOL_MAX: int(10),
  DATA_DIR: z.string().default('./data'),
  LATCHKEY_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  COOKIE_SECRETS: z.string().optional(),
  TRUST_PROXY: bool.default(false),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PRODUCT_NAME: z.string().default('Latchkey'),
  THEME_DIR: z.string().optional(),
  BODY_LIMIT: z.string().default('64kb'),
  ARGON2_MEMORY_KIB: int(19456),
  ARGON2_TIME_COST: int(2),
  ARGON2_PARALLELISM: int(1),
  PASSWORD_MIN_LENGTH: int(8),
  ACCESS_TOKEN_TTL: int(3600),
  ID_TOKEN_TTL: int(3600),
  REFRESH_TOKEN_TTL: int(14 * 24 * 3600),
  SESSION_TTL: int(14 * 24 * 3600),
  GRANT_TTL: int(365 * 24 * 3600),
  INTERACTION_TTL: int(3600),
  SWEEP_INTERVAL: int(300),
  KEY_CHECK_INTERVAL: int(30),
  ACR_PWD: z.string().default('urn:latchkey:acr:pwd'),
  ACR_MFA: z.string().default('urn:latchkey:acr:mfa'),
  ACR_PHR: z.string().default('urn:latchkey:acr:phr'),
  STEP_UP_TTL: int(900),
  STEP_UP_TTL_MFA: z.coerce.number().int().nonnegative().optional(),
  STEP_UP_TTL_PHR: z.coerce.number().int().nonnegative().optional(),
  STEP_UP_ENROLL: z.enum(['inline', 'deny']).default('inline'),
  RECENT_AUTH_TTL: int(300),
  LOGIN_RATE_LIMIT_PER_IP: int(30),
  LOGIN_RATE_LIMIT_PER_ACCOUNT: int(10),
});

export type Config = ReturnType<typeof buildConfig>;

export class ConfigError extends Error {}

function buildConfig(env: z.infer<typeof envSchema>) {
  const issuer = (env.ISSUER ?? `http://localhost:${env.PORT}`).replace(/\/+$/, '');
  const production = env.NODE_ENV === 'production';
  if (production && !env.LATCHKEY_SECRET) {
    throw new ConfigError('LATCHKEY_SECRET is required when NODE_ENV=production (at least 32 random characters)');
  }
  return {
    env: env.NODE_ENV,
    production,
    port: env.PORT,
    host: env.HOST,
    issuer,
    secureCookies: issuer.startsWith('https://'),
    databaseUrl: env.DATABASE_URL,
    databasePoolMax: env.DATABASE_POOL_MAX,
    dataDir: path.resolve(env.DATA_DIR),
    rootSecret: env.LATCHKEY_SECRET,
    cookieSecrets: env.COOKIE_SECRETS?.split(',').map((s) => s.trim()).filter(Boolean),
    trustProxy: env.TRUST_PROXY,
    logLevel: env.LOG_LEVEL,
    productName: env.PRODUCT_NAME,
    themeDir: env.THEME_DIR ? path.resolve(env.THEME_DIR) : undefined,
    bodyLimit: env.BODY_LIMIT,
    argon2: { memoryCost: env.ARGON2_MEMORY_KIB, timeCost: env.ARGON2_TIME_COST, parallelism: env.ARGON2_PARALLELISM },
    password: { minLength: env.PASSWORD_MIN_LENGTH, maxLength: 128 },
    ttl: {
      accessToken: env.ACCESS_TOKEN_TTL,
      idToken: env.ID_TOKEN_TTL,
      refreshToken: env.REFRESH_TOKEN_TTL,
      session: env.SESSION_TTL,
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
    rateLimits: { loginPerIp: env.LOGIN_RATE_LIMIT_PER_IP, loginPerAccount: env.LOGIN_RATE_LIMIT_PER_ACCOUNT },
  };
}

export function loadConfig(source: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset" (docker-compose often passes VAR= for optional values).
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return buildConfig(parsed.data);
}
