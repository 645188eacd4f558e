// Composes the koa application: plumbing, our routes, then oidc-provider mounted last.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Koa, { type Context, type Middleware } from 'koa';
import Router from '@koa/router';
import mount from 'koa-mount';
import serveStatic from 'koa-static';
import type Provider from 'oidc-provider';
import type { Config } from './config.ts';
import { createDb, type Db } from './db/knex.ts';
import { prepareDatabase } from './db/prepare.ts';
import { registerConsentRoutes } from './flows/consent/routes.ts';
import type { FlowDeps } from './flows/context.ts';
import { registerLoginRoutes } from './flows/login/routes.ts';
import { registerSamlRoutes } from './flows/saml/routes.ts';
import { createConnectionStore } from './federation/saml/connections.ts';
import { createScimApi } from './scim/routes.ts';
import { registerAccountRoutes } from './flows/account/routes.ts';
import { registerSecurityRoutes, securitySection } from './flows/account/security.ts';
import { registerConsoleRoutes } from './flows/account/console.ts';
import { registerAccountApiRoutes } from './flows/account-api/routes.ts';
import { registerStepUpRoutes } from './flows/step-up/routes.ts';
import { registerSignupRoutes } from './flows/signup/routes.ts';
import { emailAccountSection, registerChangeEmailRoutes } from './flows/change-email/routes.ts';
import { registerMagicLinkRoutes } from './flows/magic-link/routes.ts';
import { registerResetPasswordRoutes } from './flows/reset-password/routes.ts';
import { registerVerifyEmailRoutes } from './flows/verify-email/routes.ts';
import { securityNotifier } from './flows/notify.ts';
import { registerDeletionRoutes } from './flows/deletion/routes.ts';
import { registerSessionRoutes } from './flows/account/sessions.ts';
import { registerPasswordRoutes } from './flows/account/password.ts';
import { createDeviceSessionHooks } from './sessions/sign-in.ts';
import { createDeletionService, type DeletionService } from './flows/deletion/service.ts';
import { createSecurityEvents, type SecurityEvents } from './events/index.ts';
import { createOutbound } from './security/outbound.ts';
import { createMail } from './mail/index.ts';
import { parseBody, rejectNulInUrl } from './http/forms.ts';
import { errorHandler, requestContext } from './http/request-context.ts';
import { createViews } from './http/views.ts';
import { scheduleJobs, type JobServices } from './jobs/index.ts';
import { createPasswordMethod, type PasswordMethod } from './methods/password/index.ts';
import { createTotpMethod } from './methods/totp/index.ts';
import { createRecoveryCodeMethod } from './methods/recovery-code/index.ts';
import { createPasskeyMethod } from './methods/passkey/index.ts';
import { createFactorRegistry } from './methods/registry.ts';
import { createLoginThrottle } from './security/login-throttle.ts';
import { createClientStore, type ClientStore } from './oidc/clients.ts';
import { attachProviderEvents } from './oidc/events.ts';
import { loadSigningJwks, signingKeysVersion } from './oidc/keys.ts';
import { assurancePolicyFrom, createProvider } from './oidc/provider.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics, metricsEndpoint } from './observability/metrics.ts';
import { createAudit, type Audit } from './security/audit.ts';
import { startSealer } from './security/audit-chain.ts';
import { csrfProtection } from './security/csrf.ts';
import { securityHeaders } from './security/headers.ts';
import { loadSecrets } from './security/secrets.ts';

const PUBLIC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../public');
// The package's exports hide its browser bundle; locate it from the package entry.
const WEBAUTHN_BROWSER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.resolve('@simplewebauthn/browser'))), '../dist/bundle');

export interface Latchkey {
  app: Koa;
  db: Db;
  clients: ClientStore;
  password: PasswordMethod;
  audit: Audit;
  atRestKey: Buffer;
  /** What scheduled and on-demand jobs use besides the database. */
  jobServices: JobServices;
  /** Account deletion (schedule, cancel, purge) and the Security Event Token outbox. */
  deletion: DeletionService;
  events: SecurityEvents;
  provider(): Provider;
  /** Rebuilds the provider if the published signing keys changed. */
  reloadKeys(): Promise<void>;
  close(): Promise<void>;
}

/** Runs CLI commands sent over loopback by a CLI process (the embedded database has one owner). */
export interface CommandBridge {
  /** True when the request comes from this machine with the bridge token. */
  authorized(ctx: Context): boolean;
  run(argv: string[], latchkey: Latchkey, out: { out(s: string): void; err(s: string): void }): Promise<number>;
}

export interface LatchkeyOptions {
  /** Run scheduled jobs and watch for key rotations (the server); off for one-shot CLI commands. */
  background: boolean;
  /**
   * Serve CLI commands for this process's embedded database (see cli/embedded-bridge.ts): the
   * caller (the CLI entry) supplies how a command runs, so the app never imports the CLI.
   */
  bridge?: CommandBridge;
  /** A database handle opened earlier (start-up overlaps opening it with loading the app). */
  db?: Db;
}

const PROVIDER_ONLY_PATHS = new Set(['/token', '/token/introspection', '/token/revocation', '/me', '/jwks', '/.well-known/openid-configuration']);

export async function createLatchkey(config: Config, log: Logger, options: LatchkeyOptions): Promise<Latchkey> {
  const secrets = loadSecrets(config, log);
  const db = options.db ?? createDb(config);
  await prepareDatabase(db, secrets.atRestKey, log);

  const views = createViews({ productName: config.productName, themeDir: config.themeDir });
  const metrics = createMetrics();
  const audit = createAudit(db, log, secrets.auditRefKey);
  const clients = createClientStore(db, secrets.atRestKey);
  const assurance = assurancePolicyFrom(config);
  const totp = createTotpMethod(db, secrets.atRestKey, config.productName);
  const recoveryCodes = createRecoveryCodeMethod(db);
  const passkeys = createPasskeyMethod(db, config.webauthn);
  const factors = createFactorRegistry(db, { totp, recoveryCodes, passkeys });
  const mail = createMail(config, log, db, secrets.atRestKey);
  const deviceSessions = createDeviceSessionHooks({ db, audit, mail, log });

  async function buildProvider(): Promise<{ provider: Provider; handler: Middleware }> {
    const jwks = await loadSigningJwks(db, secrets.atRestKey);
    const provider = createProvider({ config, db, views, clients, jwks, cookieKeys: secrets.cookieKeys, atRestKey: secrets.atRestKey, assurance, factors });
    attachProviderEvents(provider, db, audit, metrics, log, mail, deviceSessions);
    return { provider, handler: mount(provider) as Middleware };
  }

  let current = await buildProvider();
  let keysVersion = await signingKeysVersion(db);

  const deps: FlowDeps = {
    config,
    db,
    views,
    audit,
    metrics,
    assurance,
    password: createPasswordMethod(db, config),
    totp,
    recoveryCodes,
    passkeys,
    factors,
    loginThrottle: createLoginThrottle(db, config, secrets.deviceKey),
    mail,
    provider: () => current.provider,
  };
  deps.notify = securityNotifier(deps);
  const events = createSecurityEvents({ db, config, log, atRestKey: secrets.atRestKey, outbound: createOutbound(config.outboundAllowOrigins) });
  const deletion = createDeletionService({ config, db, mail, events, audit, log, provider: () => current.provider });

  async function callProvider(ctx: Koa.Context, next: Koa.Next) {
    await current.handler(ctx, next);
    // Writes that provider events started (e.g. session proofs) land before the browser moves on.
    const pending = ctx.state.afterProvider as Promise<unknown>[] | undefined;
    if (pending) await Promise.all(pending);
  }

  const app = new Koa();
  app.keys = secrets.cookieKeys; // same keys as the provider's cookies, or interaction cookies go unsigned
  app.proxy = config.trustProxy;
  // The client IP is the entry our own proxies appended, not the left-most one the client wrote.
  app.maxIpsCount = config.trustProxyHops;
  app.silent = true; // errors are logged by our handlers

  app.use(requestContext(log, metrics, config.trustProxy));
  app.use(securityHeaders({ hsts: config.secureCookies }));
  app.use(errorHandler(views));
  app.use(rejectNulInUrl());
  // The provider's back-channel endpoints (tokens, introspection, userinfo, keys, discovery) are
  // its alone: they skip the matching of every router below, most of a token request's overhead.
  app.use((ctx, next) => (PROVIDER_ONLY_PATHS.has(ctx.path) ? callProvider(ctx, next) : next()));

  const ops = new Router();
  ops.get('/healthz', (ctx) => {
    ctx.body = { status: 'ok' };
  });
  ops.get('/readyz', async (ctx) => {
    try {
      await db.raw('select 1');
      ctx.body = { status: 'ready' };
    } catch (err) {
      ctx.state.log.warn({ event: 'readyz.db_unreachable', err: (err as Error).message }, 'database unreachable');
      ctx.status = 503;
      ctx.body = { status: 'unavailable', error_description: 'database unreachable' };
    }
  });
  ops.get('/metrics', metricsEndpoint(metrics, config.metricsToken));
  if (options.bridge) {
    const bridge = options.bridge;
    ops.post('/internal/cli', parseBody('64kb'), async (ctx) => {
      if (!bridge.authorized(ctx)) throw Object.assign(new Error('not found'), { status: 404, expose: true });
      const argv = (ctx.request as { body?: { argv?: unknown } }).body?.argv;
      if (!Array.isArray(argv) || !argv.every((a) => typeof a === 'string')) throw Object.assign(new Error('argv must be an array of strings'), { status: 400, expose: true });
      let stdout = '';
      let stderr = '';
      const code = await bridge.run(argv, latchkey, { out: (s) => (stdout += s), err: (s) => (stderr += s) });
      ctx.body = { code, stdout, stderr };
    });
  }
  app.use(ops.routes());
  app.use(mount('/static', serveStatic(PUBLIC_DIR, { maxage: 3600_000, gzip: false, brotli: false })));
  // The WebAuthn browser helper, served from our origin (CSP: script-src 'self').
  app.use(mount('/static/vendor', serveStatic(WEBAUTHN_BROWSER_DIR, { maxage: 3600_000, gzip: false, brotli: false })));

  // Our pages: body parsed with a size limit, then CSRF verified before any handler runs.
  const pages = new Router();
  pages.use(parseBody(config.bodyLimit));
  pages.use(csrfProtection({ key: secrets.csrfKey, secure: config.secureCookies }));
  // SAML: the ACS takes a cross-site POST from the IdP (no CSRF token: the response is its own
  // proof), so it has its own router; home-realm discovery goes in front of the sign-in forms.
  const saml = new Router();
  saml.use(parseBody('512kb'));
  registerSamlRoutes(pages, saml, deps, { connections: createConnectionStore(db, secrets.atRestKey) });
  app.use(saml.routes());
  // SCIM provisioning: bearer-authenticated JSON (no cookies, so no CSRF), its own body parsing.
  app.use(createScimApi(deps, { connections: createConnectionStore(db, secrets.atRestKey), deletion, events }));
  registerLoginRoutes(pages, deps);
  registerSignupRoutes(pages, deps);
  registerConsentRoutes(pages, deps);
  registerStepUpRoutes(pages, deps);
  registerAccountRoutes(pages, deps, [emailAccountSection, securitySection]);
  registerSecurityRoutes(pages, deps);
  registerConsoleRoutes(pages, deps);
  registerVerifyEmailRoutes(pages, deps);
  registerResetPasswordRoutes(pages, deps);
  registerMagicLinkRoutes(pages, deps);
  registerChangeEmailRoutes(pages, deps);
  registerDeletionRoutes(pages, deps, deletion);
  registerSessionRoutes(pages, deps);
  registerPasswordRoutes(pages, deps);
  // The Account API: bearer tokens, no cookies, so no CSRF and no page body parser.
  const accountApi = new Router();
  registerAccountApiRoutes(accountApi, deps, deletion);
  app.use(accountApi.routes());
  app.use(pages.routes());
  app.use(pages.allowedMethods());

  // The provider last. Indirect, so a key rotation can swap in a provider with the new JWKS.
  app.use(callProvider);

  async function reloadKeys() {
    const version = await signingKeysVersion(db);
    if (version === keysVersion) return;
    current = await buildProvider();
    keysVersion = version;
    log.info({ event: 'keys.reloaded' }, 'signing keys changed: provider reloaded');
  }

  const timers: NodeJS.Timeout[] = [];
  let stopJobs = () => {};
  let sealer: { stop(): Promise<void> } | undefined;
  if (options.background) {
    const keyTimer = setInterval(() => {
      reloadKeys().catch((err) => log.error({ event: 'keys.reload_failed', err }, 'could not reload signing keys'));
    }, config.keyCheckIntervalSeconds * 1000);
    keyTimer.unref();
    timers.push(keyTimer);
    stopJobs = scheduleJobs(db, log, config.sweepIntervalSeconds, { config, mail, events, deletion, audit });
    mail.start(); // delivers the outbox in the background, retrying failures
    await clients.cache.watch(log); // clients cached, invalidated on change (oidc/client-cache.ts)
    events.start(); // likewise the Security Event Tokens
    audit.onWebhook(() => events.kick()); // and webhooks, as soon as one is queued
    sealer = startSealer(db, log, audit.anonymousSalt); // the audit hash chain, about every second
  }

  const latchkey: Latchkey = {
    app,
    db,
    clients,
    password: deps.password,
    audit,
    atRestKey: secrets.atRestKey,
    jobServices: { config, mail, events, deletion, audit },
    deletion,
    events,
    provider: () => current.provider,
    reloadKeys,
    async close() {
      timers.forEach(clearInterval);
      stopJobs();
      await mail.stop();
      await events.stop();
      await sealer?.stop();
      await clients.cache.close();
      await audit.flush(); // batched routine rows (security/audit.ts)
      await db.destroy();
    },
  };
  return latchkey;
}
