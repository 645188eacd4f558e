// SCIM 2.0 (RFC 7643/7644) per SAML connection at /scim/v2/<connection>/…: Users, Groups and
// the discovery endpoints, authenticated by the connection's bearer token. Its own middleware
// in front of the pages (bearer-authenticated JSON: no cookies, no CSRF), answering only in
// application/scim+json, errors included.
//
// Deactivation (`active: false` by PUT or PATCH) disables the account, then revokes every
// session, grant and token at once (back-channel logout to the RPs) and tells the RPs that
// registered for Security Event Tokens (RISC account-disabled). Every write is audited.
import { bodyParser } from '@koa/bodyparser';
import Router from '@koa/router';
import type { Context, Middleware } from 'koa';
import type { FlowDeps } from '../flows/context.ts';
import type { DeletionService } from '../flows/deletion/service.ts';
import type { SecurityEvents } from '../events/index.ts';
import { CONNECTION_NAME, type ConnectionStore, type SamlConnection } from '../federation/saml/connections.ts';
import { containsNul } from '../http/forms.ts';
import { findUserById } from '../identity/users.ts';
import { postgresLimiter, RateLimitedError } from '../security/rate-limit.ts';
import { sha256Hex } from '../security/crypto.ts';
import { badRequest, notFound, respondWithError, ScimError, sendScim } from './errors.ts';
import { parseFilter } from './filter.ts';
import { createGroup, deleteGroup, findGroup, listGroups, membersOf, replaceGroup, type GroupRow, type RoleChange } from './groups.ts';
import { applyGroupPatch, applyUserPatch } from './patch.ts';
import {
  GROUP_SCHEMA,
  MAX_PAGE,
  USER_SCHEMA,
  groupBody,
  listResponse,
  parseScim,
  patchBody,
  resourceTypes,
  schemaDocuments,
  serviceProviderConfig,
  userBody,
} from './schemas.ts';
import { verifyScimToken } from './tokens.ts';
import { createScimUser, findUser, groupsOfUsers, listUsers, replaceScimUser, unlinkScimUser, userInput, userState, type UserRow, type UserWrite } from './users.ts';

export interface ScimDeps {
  connections: ConnectionStore;
  deletion: DeletionService;
  events: SecurityEvents;
}

// Users and groups are small; a group PUT with thousands of members is the largest body.
const BODY_LIMIT = '1mb';
const BAD_TOKEN_WINDOW_SECONDS = 15 * 60;
const PATH = /^\/scim\/v2\/([^/]+)(?:\/.*)?$/;
const BEARER = /^Bearer\s+(\S{1,512})$/i;

interface State {
  connection: SamlConnection;
  base: string;
}

const iso = (d: Date | string | null | undefined) => (d ? new Date(d).toISOString() : undefined);
const latest = (...dates: (Date | null | undefined)[]) => new Date(Math.max(...dates.filter((d): d is Date => Boolean(d)).map((d) => new Date(d).getTime())));

function userResource(row: UserRow, groups: { id: string; displayName: string }[], base: string) {
  const formatted = row.name ?? undefined;
  return {
    schemas: [USER_SCHEMA],
    id: row.id,
    externalId: row.external_id ?? undefined,
    userName: row.name_id,
    name: { formatted, givenName: row.given_name ?? undefined, familyName: row.family_name ?? undefined },
    displayName: row.name ?? undefined,
    emails: [{ value: row.email, type: 'work', primary: true }],
    active: row.status === 'active',
    groups: groups.map((g) => ({ value: g.id, display: g.displayName, $ref: `${base}/Groups/${g.id}` })),
    meta: { resourceType: 'User', created: iso(row.linked_at), lastModified: iso(latest(row.linked_at, row.updated_at, row.scim_updated_at)), location: `${base}/Users/${row.id}` },
  };
}

function groupResource(group: GroupRow, members: { userId: string; userName: string }[] | undefined, base: string) {
  return {
    schemas: [GROUP_SCHEMA],
    id: group.id,
    externalId: group.external_id ?? undefined,
    displayName: group.display_name,
    members: members?.map((m) => ({ value: m.userId, display: m.userName, type: 'User', $ref: `${base}/Users/${m.userId}` })),
    meta: { resourceType: 'Group', created: iso(group.created_at), lastModified: iso(group.updated_at), location: `${base}/Groups/${group.id}` },
  };
}

/** startIndex (1-based) and count from the query: RFC 7644 §3.4.2.4, count capped at MAX_PAGE. */
function paging(ctx: Context): { startIndex: number; count: number } {
  const int = (name: string, fallback: number) => {
    const raw = ctx.query[name];
    if (raw === undefined) return fallback;
    if (typeof raw !== 'string' || !/^-?\d{1,9}$/.test(raw)) throw badRequest('invalidValue', `${name} must be an integer.`);
    return Number(raw);
  };
  return { startIndex: Math.max(1, int('startIndex', 1)), count: Math.min(MAX_PAGE, Math.max(0, int('count', MAX_PAGE))) };
}

function excludesMembers(ctx: Context): boolean {
  const raw = ctx.query.excludedAttributes;
  return typeof raw === 'string' && raw.split(',').some((a) => a.trim().toLowerCase() === 'members');
}

export function createScimApi(deps: FlowDeps, scim: ScimDeps): Middleware {
  const { db, audit, config } = deps;
  const { connections, deletion, events } = scim;
  const badTokens = postgresLimiter(db, 'scim_bad_token_ip', config.rateLimits.scimPerIp, BAD_TOKEN_WINDOW_SECONDS);
  const parse = bodyParser({ enableTypes: ['json'], jsonLimit: BODY_LIMIT, encoding: 'utf-8' }) as unknown as Middleware;

  /**
   * The connection whose token the request carries. A point of the IP's budget is spent before
   * the token is even looked at and given back when it was right, so requests in flight at once
   * cannot all be compared against a budget none of them has spent yet.
   */
  async function authenticate(ctx: Context, name: string): Promise<SamlConnection> {
    const ipKey = sha256Hex(`scim-ip\0${ctx.ip}`).slice(0, 32);
    try {
      await badTokens.consume(ipKey);
    } catch (err) {
      if (err instanceof Error) throw err;
      const msBeforeNext = (err as { msBeforeNext?: number }).msBeforeNext ?? 60_000;
      throw new RateLimitedError(Math.max(1, Math.ceil(msBeforeNext / 1000)), 'scim_bad_token_ip');
    }
    const bearer = BEARER.exec(ctx.get('authorization'));
    const connection = CONNECTION_NAME.test(name) ? await connections.get(name) : undefined;
    const ok = bearer ? await verifyScimToken(db, connection?.name, bearer[1]!) : false;
    if (!ok || !connection) {
      await audit(ctx, { type: 'scim.auth_failed', data: { connection: CONNECTION_NAME.test(name) ? name : null, reason: bearer ? 'invalid_token' : 'missing_token' } });
      throw new ScimError(401, bearer ? 'The bearer token is not valid for this connection.' : 'A bearer token is required.');
    }
    await badTokens.reward(ipKey, 1);
    return connection;
  }

  async function auditRoles(ctx: Context, connection: string, roles: RoleChange[]) {
    for (const r of roles) await audit(ctx, { type: 'user.roles_changed', userId: r.userId, data: { connection, via: 'scim', added: r.added, removed: r.removed } });
  }

  async function sendUser(ctx: Context, s: State, id: string, status = 200) {
    const row = await findUser(db, s.connection.name, id);
    if (!row) throw notFound('No such user.');
    const groups = (await groupsOfUsers(db, s.connection.name, [row.id])).get(row.id) ?? [];
    const resource = userResource(row, groups, s.base);
    if (status === 201) ctx.set('Location', resource.meta.location);
    sendScim(ctx, status, resource);
  }

  async function sendGroup(ctx: Context, s: State, id: string, status = 200) {
    const group = await findGroup(db, s.connection.name, id);
    if (!group) throw notFound('No such group.');
    const members = excludesMembers(ctx) ? undefined : (await membersOf(db, [group.id])).get(group.id) ?? [];
    const resource = groupResource(group, members, s.base);
    if (status === 201) ctx.set('Location', resource.meta.location);
    sendScim(ctx, status, resource);
  }

  /** Audits a user write; a deactivation revokes everything the account holds, at once. */
  async function afterUserWrite(ctx: Context, connection: string, write: UserWrite) {
    const changed = write.changed.filter((c) => c !== 'active');
    if (changed.length) await audit(ctx, { type: 'scim.user_updated', userId: write.userId, data: { connection, changed } });
    await auditRoles(ctx, connection, write.roles);
    if (write.statusChange === 'deactivated') {
      // Who to tell is known only while the user's grants and sessions still exist.
      const clients = await events.clientsKnowing(db, write.userId);
      const revoked = await deletion.revokeEverything(write.userId);
      if (clients.length) {
        await events.enqueue(db, clients, 'account-disabled', write.userId);
        events.kick();
      }
      await audit(ctx, { type: 'scim.user_deactivated', userId: write.userId, data: { connection, sessions: revoked.sessions, artifacts: revoked.artifacts, backchannel: revoked.backchannel, clientsTold: clients.length } });
    } else if (write.statusChange === 'reactivated') {
      await audit(ctx, { type: 'scim.user_reactivated', userId: write.userId, data: { connection } });
    }
  }

  const router = new Router<State>({ prefix: '/scim/v2/:connection' });
  const st = (ctx: Context) => ctx.state as State;
  const bodyOf = (ctx: Context) => (ctx.request as { body?: unknown }).body;

  // --- discovery ------------------------------------------------------------------------------
  router.get('/ServiceProviderConfig', (ctx) => sendScim(ctx, 200, serviceProviderConfig(st(ctx).base)));
  router.get('/Schemas', (ctx) => {
    const docs = schemaDocuments(st(ctx).base);
    sendScim(ctx, 200, listResponse(docs, docs.length, 1));
  });
  router.get('/Schemas/:id', (ctx) => {
    const doc = schemaDocuments(st(ctx).base).find((d) => d.id === ctx.params.id);
    if (!doc) throw notFound('No such schema.');
    sendScim(ctx, 200, doc);
  });
  router.get('/ResourceTypes', (ctx) => {
    const types = resourceTypes(st(ctx).base);
    sendScim(ctx, 200, listResponse(types, types.length, 1));
  });
  router.get('/ResourceTypes/:id', (ctx) => {
    const type = resourceTypes(st(ctx).base).find((t) => t.id === ctx.params.id);
    if (!type) throw notFound('No such resource type.');
    sendScim(ctx, 200, type);
  });

  // --- users ----------------------------------------------------------------------------------
  router.get('/Users', async (ctx) => {
    const s = st(ctx);
    const { startIndex, count } = paging(ctx);
    const { rows, total } = await listUsers(db, s.connection.name, parseFilter(ctx.query.filter), startIndex, count);
    const groups = await groupsOfUsers(db, s.connection.name, rows.map((r) => r.id));
    sendScim(ctx, 200, listResponse(rows.map((r) => userResource(r, groups.get(r.id) ?? [], s.base)), total, startIndex));
  });

  router.post('/Users', async (ctx) => {
    const s = st(ctx);
    const input = userInput(parseScim(userBody, bodyOf(ctx)));
    const write = await createScimUser(db, s.connection, input);
    await audit(ctx, { type: 'scim.user_created', userId: write.userId, data: { connection: s.connection.name, active: input.active ?? true } });
    await auditRoles(ctx, s.connection.name, write.roles);
    await sendUser(ctx, s, write.userId, 201);
  });

  router.get('/Users/:id', (ctx) => sendUser(ctx, st(ctx), ctx.params.id!));

  router.put('/Users/:id', async (ctx) => {
    const s = st(ctx);
    if (!(await findUser(db, s.connection.name, ctx.params.id!))) throw notFound('No such user.');
    const input = userInput(parseScim(userBody, bodyOf(ctx)));
    await afterUserWrite(ctx, s.connection.name, await replaceScimUser(db, s.connection, ctx.params.id!, input));
    await sendUser(ctx, s, ctx.params.id!);
  });

  router.patch('/Users/:id', async (ctx) => {
    const s = st(ctx);
    const row = await findUser(db, s.connection.name, ctx.params.id!);
    if (!row) throw notFound('No such user.');
    const patch = parseScim(patchBody, bodyOf(ctx));
    const state = applyUserPatch(userState(row), patch);
    const input = userInput(parseScim(userBody, state));
    await afterUserWrite(ctx, s.connection.name, await replaceScimUser(db, s.connection, row.id, input));
    await sendUser(ctx, s, row.id);
  });

  router.delete('/Users/:id', async (ctx) => {
    const s = st(ctx);
    if (!(await findUser(db, s.connection.name, ctx.params.id!))) throw notFound('No such user.');
    const userId = ctx.params.id!;
    const unlinked = await unlinkScimUser(db, s.connection, userId);
    if (!unlinked) throw notFound('No such user.');
    // Audited before a purge, so the purge anonymises this row with the user's others.
    await audit(ctx, { type: 'scim.user_deleted', userId, data: { connection: s.connection.name, purged: unlinked.purge } });
    const user = await findUserById(db, userId);
    if (unlinked.purge && user) await deletion.deleteNow(user);
    else await deletion.revokeEverything(userId);
    ctx.status = 204;
  });

  // --- groups ---------------------------------------------------------------------------------
  router.get('/Groups', async (ctx) => {
    const s = st(ctx);
    const { startIndex, count } = paging(ctx);
    const { rows, total } = await listGroups(db, s.connection.name, parseFilter(ctx.query.filter), startIndex, count);
    const members = excludesMembers(ctx) ? undefined : await membersOf(db, rows.map((g) => g.id));
    sendScim(ctx, 200, listResponse(rows.map((g) => groupResource(g, members ? (members.get(g.id) ?? []) : undefined, s.base)), total, startIndex));
  });

  const groupInput = (body: ReturnType<typeof groupBody.parse>) => ({ displayName: body.displayName, externalId: body.externalId || null, members: (body.members ?? []).map((m) => m.value) });

  router.post('/Groups', async (ctx) => {
    const s = st(ctx);
    const input = groupInput(parseScim(groupBody, bodyOf(ctx)));
    const write = await createGroup(db, s.connection, input);
    await audit(ctx, { type: 'scim.group_created', data: { connection: s.connection.name, group: write.id, added: write.added.length } });
    await auditRoles(ctx, s.connection.name, write.roles);
    await sendGroup(ctx, s, write.id, 201);
  });

  router.get('/Groups/:id', (ctx) => sendGroup(ctx, st(ctx), ctx.params.id!));

  async function writeGroup(ctx: Context, input: Parameters<typeof replaceGroup>[3]) {
    const s = st(ctx);
    if (!(await findGroup(db, s.connection.name, ctx.params.id!))) throw notFound('No such group.');
    const write = await replaceGroup(db, s.connection, ctx.params.id!, input);
    await audit(ctx, { type: 'scim.group_updated', data: { connection: s.connection.name, group: write.id, added: write.added.length, removed: write.removed.length } });
    await auditRoles(ctx, s.connection.name, write.roles);
    await sendGroup(ctx, s, write.id);
  }

  router.put('/Groups/:id', (ctx) => writeGroup(ctx, groupInput(parseScim(groupBody, bodyOf(ctx)))));

  router.patch('/Groups/:id', async (ctx) => {
    const patch = parseScim(patchBody, bodyOf(ctx));
    const id = ctx.params.id!;
    await writeGroup(ctx, (current) => {
      const state = applyGroupPatch({ ...current, members: [...current.members] }, patch, id);
      return groupInput(parseScim(groupBody, { schemas: [GROUP_SCHEMA], displayName: state.displayName, externalId: state.externalId, members: state.members.map((value) => ({ value })) }));
    });
  });

  router.delete('/Groups/:id', async (ctx) => {
    const s = st(ctx);
    const write = await deleteGroup(db, s.connection, ctx.params.id!);
    if (!write) throw notFound('No such group.');
    await audit(ctx, { type: 'scim.group_deleted', data: { connection: s.connection.name, group: write.id, removed: write.removed.length } });
    await auditRoles(ctx, s.connection.name, write.roles);
    ctx.status = 204;
  });

  const routes = router.routes() as unknown as Middleware;

  return async (ctx, next) => {
    if (ctx.path !== '/scim/v2' && !ctx.path.startsWith('/scim/v2/')) return next();
    ctx.set('Cache-Control', 'no-store');
    try {
      const m = PATH.exec(ctx.path);
      if (!m) throw notFound('Use /scim/v2/<connection>/Users or /Groups.');
      let name: string;
      try {
        name = decodeURIComponent(m[1]!);
      } catch {
        throw notFound();
      }
      const connection = await authenticate(ctx, name);
      Object.assign(ctx.state, { connection, base: `${config.issuer}/scim/v2/${connection.name}` } satisfies State);
      if (ctx.method === 'POST' || ctx.method === 'PUT' || ctx.method === 'PATCH') {
        if (!ctx.is('application/scim+json', 'application/json')) throw new ScimError(415, 'Send application/scim+json (or application/json).');
        await parse(ctx, async () => {});
        // PostgreSQL refuses NUL in text: refused here, as on every other route (http/forms.ts).
        if (containsNul(bodyOf(ctx))) throw badRequest('invalidValue', 'The request contains a NUL character, which no attribute accepts.');
      }
      await routes(ctx, async () => {
        throw notFound('No such endpoint.');
      });
      // The router answers a known path with a wrong method by leaving the response empty.
      if (ctx.status === 404 && ctx.body === undefined) throw notFound('No such endpoint.');
    } catch (err) {
      respondWithError(ctx, err);
    }
  };
}
