// The Account API (JSON) for relying parties and single-page apps: /api/account…, authorised by
// JWT access tokens for the resource `<ISSUER>/api/account` carrying `account:read` (reads) or
// `account:write` (changes). Only clients registered with --account-api can get such tokens.
//
//   GET    /api/account                      the profile
//   GET    /api/account/sessions             the user's signed-in browser sessions
//   DELETE /api/account/sessions/{id}        ends one (its session-bound tokens go with it)
//   GET    /api/account/grants               applications with access
//   DELETE /api/account/grants/{client_id}   "Remove access": grants and tokens revoked
//   GET    /api/account/deletion             deletion status
//   POST   /api/account/deletion             schedules deletion: needs a recent authentication
//                                            (auth_time within DELETION_MAX_AGE, RFC 9470)
//   DELETE /api/account/deletion             cancels it
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import { levelForAcr, rank, type Level } from '../../assurance/index.ts';
import { findScheduledDeletion } from '../../identity/deletion.ts';
import type { FlowDeps } from '../context.ts';
import type { DeletionService } from '../deletion/service.ts';
import { listGrantedApps, removeAppAccess } from '../account/apps.ts';
import { strongestFactor } from '../account/session.ts';
import { BearerError, createAccountApiVerifier, type AccountApiToken } from './token.ts';

type Scope = 'account:read' | 'account:write';

interface SessionRow {
  uid: string;
  payload: { loginTs?: number; iat?: number; exp?: number; authorizations?: Record<string, unknown> };
  created_at: Date;
  expires_at: Date | null;
}

function json(ctx: Context, status: number, body: unknown) {
  ctx.status = status;
  ctx.set('Cache-Control', 'no-store');
  ctx.body = body;
}

function fail(ctx: Context, err: BearerError) {
  ctx.set('WWW-Authenticate', err.challenge());
  json(ctx, err.status, { error: err.code ?? 'invalid_token', error_description: err.message });
}

const epoch = (d: Date | null | undefined) => (d ? d.toISOString() : null);
const fromSeconds = (s: number | undefined) => (typeof s === 'number' ? new Date(s * 1000).toISOString() : null);

export function registerAccountApiRoutes(router: Router, deps: FlowDeps, deletion: DeletionService) {
  const verifier = createAccountApiVerifier(deps.db, deps.config.issuer);
  const api = new Router({ prefix: '/api/account' });

  // Browsers call this from the RP's own origin: allowed for the origins of the redirect URIs of
  // clients registered for the Account API. Bearer tokens only, never cookies.
  const cors: Middleware = async (ctx, next) => {
    const origin = ctx.get('origin');
    if (origin) {
      const rows = (await deps.db('oidc_clients').whereRaw(`(metadata->>'account_api')::boolean IS TRUE`).select('metadata')) as { metadata: { redirect_uris?: string[] } }[];
      const allowed = rows.some((r) => (r.metadata.redirect_uris ?? []).some((u) => URL.parse(u)?.origin === origin));
      if (allowed) {
        ctx.set('Access-Control-Allow-Origin', origin);
        ctx.set('Vary', 'Origin');
        ctx.set('Access-Control-Expose-Headers', 'WWW-Authenticate');
        if (ctx.method === 'OPTIONS') {
          ctx.set('Access-Control-Allow-Methods', 'GET, POST, DELETE');
          ctx.set('Access-Control-Allow-Headers', 'Authorization');
          ctx.set('Access-Control-Max-Age', '600');
          ctx.status = 204;
          return;
        }
      }
    }
    await next();
  };

  api.use(cors);
  api.options('/{*rest}', (ctx) => {
    ctx.status = 204;
  });

  /** Verifies the bearer token and that it carries `scope`; the token goes to ctx.state.token. */
  function requireScope(scope: Scope): Middleware {
    return async (ctx, next) => {
      try {
        const token = await verifier.verify(ctx.get('authorization') || undefined);
        // account:write includes reading: it is the wider of the two.
        const has = token.scopes.has(scope) || (scope === 'account:read' && token.scopes.has('account:write'));
        if (!has) throw new BearerError(403, 'insufficient_scope', `This call needs the ${scope} scope.`, { scope });
        ctx.state.token = token;
      } catch (err) {
        if (!(err instanceof BearerError)) throw err;
        return fail(ctx, err);
      }
      await next();
    };
  }

  const tokenOf = (ctx: Context) => ctx.state.token as AccountApiToken;

  api.get('/', requireScope('account:read'), async (ctx) => {
    const { user } = tokenOf(ctx);
    json(ctx, 200, {
      sub: user.id,
      email: user.email,
      email_verified: user.email_verified,
      name: user.name,
      picture: user.picture ?? null,
      created_at: epoch(user.created_at),
      account_management_uri: `${deps.config.issuer}/account`,
    });
  });

  async function sessionsOf(userId: string): Promise<SessionRow[]> {
    return (await deps.db('oidc_payloads')
      .where({ model: 'Session', account_id: userId })
      .where((q) => q.whereNull('expires_at').orWhere('expires_at', '>', deps.db.fn.now()))
      .orderBy('created_at', 'desc')
      .select('uid', 'payload', 'created_at', 'expires_at')) as SessionRow[];
  }

  api.get('/sessions', requireScope('account:read'), async (ctx) => {
    const rows = await sessionsOf(tokenOf(ctx).user.id);
    // Session.save can briefly hold two rows for one uid (oidc-provider #1145): show it once.
    const seen = new Set<string>();
    const sessions = rows
      .filter((r) => r.uid && !seen.has(r.uid) && seen.add(r.uid))
      .map((r) => ({
        id: r.uid,
        signed_in_at: fromSeconds(r.payload.loginTs) ?? epoch(r.created_at),
        expires_at: epoch(r.expires_at),
        clients: Object.keys(r.payload.authorizations ?? {}),
      }));
    json(ctx, 200, { sessions });
  });

  api.delete('/sessions/:id', requireScope('account:write'), async (ctx) => {
    const token = tokenOf(ctx);
    const uid = ctx.params.id!;
    // Session uids are the provider's (nanoid alphabet); anything else names no session.
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(uid)) return json(ctx, 404, { error: 'not_found', error_description: 'No such session.' });
    const removed = await deps.db.transaction(async (trx) => {
      const sessions = await trx('oidc_payloads').where({ model: 'Session', account_id: token.user.id, uid }).delete(['uid']);
      if (sessions.length === 0) return 0;
      // What that session proved, and the tokens bound to it, end with it.
      await trx('session_proofs').where({ session_uid: uid }).delete();
      await trx('oidc_payloads').where({ account_id: token.user.id }).whereRaw(`payload->>'sessionUid' = ?`, [uid]).delete();
      return sessions.length;
    });
    if (!removed) return json(ctx, 404, { error: 'not_found', error_description: 'No such session.' });
    await deps.audit(ctx, { type: 'session.ended', userId: token.user.id, clientId: token.clientId, data: { reason: 'account-api' } });
    ctx.status = 204;
  });

  api.get('/grants', requireScope('account:read'), async (ctx) => {
    const apps = await listGrantedApps(deps.db, tokenOf(ctx).user.id);
    const provider = deps.provider();
    const grants = await Promise.all(
      apps.map(async (app) => {
        const client = await provider.Client.find(app.clientId).catch(() => undefined);
        return { client_id: app.clientId, client_name: client?.clientName ?? null, scopes: app.scopes, granted_at: epoch(app.grantedAt), last_granted_at: epoch(app.lastGrantedAt) };
      }),
    );
    json(ctx, 200, { grants });
  });

  api.delete('/grants/:clientId', requireScope('account:write'), async (ctx) => {
    const token = tokenOf(ctx);
    const clientId = ctx.params.clientId!;
    const removed = await removeAppAccess(deps.db, token.user.id, clientId);
    if (!removed) return json(ctx, 404, { error: 'not_found', error_description: 'That application has no access.' });
    await deps.audit(ctx, { type: 'access.removed', userId: token.user.id, clientId, data: { via: 'account-api', by: token.clientId, rows: removed } });
    ctx.status = 204;
  });

  api.get('/deletion', requireScope('account:read'), async (ctx) => {
    const scheduled = await findScheduledDeletion(deps.db, tokenOf(ctx).user.id);
    json(ctx, 200, scheduled ? { status: 'scheduled', deletion_date: scheduled.deleteAfter.toISOString() } : { status: 'none' });
  });

  /**
   * Deletion needs a recent authentication with the user's strongest factor (RFC 9470): an
   * auth_time within DELETION_MAX_AGE, and an acr that factor reaches (phr with a passkey, mfa
   * with an authenticator app). Otherwise the RP sends the user through step-up and retries.
   */
  async function requireRecentStrongAuth(token: AccountApiToken): Promise<void> {
    const maxAge = deps.config.deletion.maxAgeSeconds;
    const now = Math.floor(Date.now() / 1000);
    if (token.authTime === undefined || now - token.authTime > maxAge) {
      throw new BearerError(401, 'insufficient_user_authentication', 'A more recent authentication is required.', { max_age: maxAge });
    }
    const factor = await strongestFactor(deps, token.user.id);
    const needed: Level | undefined = factor === 'passkey' ? 'phr' : factor === 'totp' ? 'mfa' : undefined;
    if (needed && rank(levelForAcr(deps.assurance, token.acr)) < rank(needed)) {
      throw new BearerError(401, 'insufficient_user_authentication', 'Authentication with the strongest factor of this account is required.', {
        acr_values: deps.assurance.names[needed],
        max_age: maxAge,
      });
    }
  }

  api.post('/deletion', requireScope('account:write'), async (ctx) => {
    const token = tokenOf(ctx);
    try {
      await requireRecentStrongAuth(token);
    } catch (err) {
      if (!(err instanceof BearerError)) throw err;
      return fail(ctx, err);
    }
    const { deleteAfter, alreadyScheduled } = await deletion.schedule(token.user, { requestedBy: 'user', clientId: token.clientId, ctx });
    json(ctx, alreadyScheduled ? 200 : 202, { status: 'scheduled', deletion_date: deleteAfter.toISOString() });
  });

  api.delete('/deletion', requireScope('account:write'), async (ctx) => {
    const cancelled = await deletion.cancel(tokenOf(ctx).user.id, ctx);
    json(ctx, 200, { status: cancelled ? 'cancelled' : 'none' });
  });

  // Anything else under /api/account is a JSON 404, never a page.
  api.all('/{*rest}', (ctx) => json(ctx, 404, { error: 'not_found', error_description: 'No such Account API route.' }));

  router.use(api.routes(), api.allowedMethods());
}
