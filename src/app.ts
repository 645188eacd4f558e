// Composes the koa application: plumbing, our routes, then oidc-provider mounted last.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Koa, { type Middleware } from 'koa';
import Router from '@koa/router';
import mount from 'koa-mount';
import serveStatic from 'koa-static';
import type Provider from 'oidc-provider';
import type { Config } from './config.ts';
import { createDb, type Db } from './db/knex.ts';
import { migrateLatest } from './db/migrate.ts';
import { registerConsentRoutes } from './flows/consent/routes.ts';
import type { FlowDeps } from './flows/context.ts';
import { registerLoginRoutes } from './flows/login/routes.ts';
import { registerSignupRoutes } from './flows/signup/routes.ts';
import { parseBody } from './http/forms.ts';
import { errorHandler, requestContext } from './http/request-context.ts';
import { createViews } from './http/views.ts';
import { scheduleJobs } from './jobs/index.ts';
import { createPasswordMethod } from './methods/password/index.ts';
import { createClientStore } from './oidc/clients.ts';
import { attachProviderEvents } from './oidc/events.ts';
import { ensureSigningKeys, loadSigningJwks, signingKeysVersion } from './oidc/keys.ts';
import { assurancePolicyFrom, createProvider } from './oidc/provider.ts';
import type { Logger } from './observability/logger.ts';
import { createMetrics } from './observability/metrics.ts';
import { createAudit } from './security/audit.ts';
import { csrfProtection } from './security/csrf.ts';
import { securityHeaders } from './security/headers.ts';
import { loadSecrets } from './security/secrets.ts';

const PUBLIC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../public');

export interface Latchkey {
  app: Koa;
  db: Db;
  provider(): Provider;
  close(): Promise<void>;
}

export async function createLatchkey(config: Config, log: Logger): Promise<Latchkey> {
  const secrets = loadSecrets(config, log);
  const db = createDb(config);
  const applied = await migrateLatest(db);
  if (applied.length) log.info({ event: 'db.migrated', applied }, 'database migrated');
  const createdKeys = await ensureSigningKeys(db, secrets.atRestKey);
  if (createdKeys.length) log.info({ event: 'keys.created', algs: createdKeys }, 'signing keys generated');

  const views = createViews({ productName: config.productName, themeDir: config.themeDir });
  const metrics = createMetrics();
  const audit = createAudit(db, log);
  const clients = createClientStore(db, secrets.atRestKey);
  const assurance = assurancePolicyFrom(config);

  async function buildProvider(): Promise<{ provider: Provider; handler: Middleware }> {
    const jwks = await loadSigningJwks(db, secrets.atRestKey);
    const provider = createProvider({ config, db, views, clients, jwks, cookieKeys: secrets.cookieKeys, assurance });
    attachProviderEvents(provider, audit, metrics, log);
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
    provider: () => current.provider,
  };

  const app = new Koa();
  app.keys = secrets.cookieKeys; // same keys as the provider's cookies, or interaction cookies go unsigned
  app.proxy = config.trustProxy;
  app.silent = true; // errors are logged by our handlers

  app.use(requestContext(log, metrics, config.trustProxy));
  app.use(securityHeaders({ hsts: config.secureCookies }));
  app.use(errorHandler(views));

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
  ops.get('/metrics', async (ctx) => {
    ctx.type = metrics.registry.contentType;
    ctx.body = await metrics.registry.metrics();
  });
  app.use(ops.routes());
  app.use(mount('/static', serveStatic(PUBLIC_DIR, { maxage: 3600_000, gzip: false, brotli: false })));

  // Our pages: body parsed with a size limit, then CSRF verified before any handler runs.
  const pages = new Router();
  pages.use(parseBody(config.bodyLimit));
  pages.use(csrfProtection({ key: secrets.csrfKey, secure: config.secureCookies }));
  registerLoginRoutes(pages, deps);
  registerSignupRoutes(pages, deps);
  registerConsentRoutes(pages, deps);
  app.use(pages.routes());
  app.use(pages.allowedMethods());

  // The provider last. Indirect, so a key rotation can swap in a provider with the new JWKS.
  app.use((ctx, next) => current.handler(ctx, next));

  const keyTimer = setInterval(async () => {
    try {
      const version = await signingKeysVersion(db);
      if (version !== keysVersion) {
        current = await buildProvider();
        keysVersion = version;
        log.info({ event: 'keys.reloaded' }, 'signing keys changed: provider reloaded');
      }
    } catch (err) {
      log.error({ event: 'keys.reload_failed', err }, 'could not reload signing keys');
    }
  }, config.keyCheckIntervalSeconds * 1000);
  keyTimer.unref();
  const stopJobs = scheduleJobs(db, log, config.sweepIntervalSeconds);

  return {
    app,
    db,
    provider: () => current.provider,
    async close() {
      clearInterval(keyTimer);
      stopJobs();
      await db.destroy();
    },
  };
}
