// Remembered consent: which grant a user gave a third-party client, so a new session reuses it.
//
// oidc-provider revokes a whole grant when a used refresh token comes back, so a grant must
// never be shared by two sign-ins: the remembered grant is a template, and each session gets
// its own copy of it (its token family), which reuse detection may revoke alone.
import type { Grant, KoaContextWithOIDC } from 'oidc-provider';
import type { Db } from '../db/knex.ts';

export async function findRememberedGrant(db: Db, userId: string, clientId: string): Promise<string | undefined> {
  const row = await db('remembered_grants').where({ user_id: userId, client_id: clientId }).first('grant_id');
  return row?.grant_id;
}

export async function rememberGrant(db: Db, userId: string, clientId: string, grantId: string): Promise<void> {
  await db('remembered_grants')
    .insert({ user_id: userId, client_id: clientId, grant_id: grantId })
    .onConflict(['user_id', 'client_id'])
    .merge({ grant_id: grantId, updated_at: db.fn.now() });
}

/** A new grant with the same consent (scopes, claims, resources, details) as `source`, saved. */
async function copyGrant(ctx: KoaContextWithOIDC, source: Grant): Promise<Grant> {
  const copy = new ctx.oidc.provider.Grant({ accountId: source.accountId, clientId: source.clientId, rar: structuredClone(source.rar) });
  copy.openid = structuredClone(source.openid);
  copy.resources = structuredClone(source.resources);
  copy.rejected = structuredClone(source.rejected);
  await copy.save();
  return copy;
}

/**
 * A first-party client is never asked for consent: its grant covers what this request asks for
 * (OpenID scopes, claims, and the scopes of each requested resource server) before the consent
 * prompt is evaluated, so the sign-in finishes without a consent interaction and its two extra
 * redirects. Whatever is not covered here (rich authorization requests, native clients) still
 * goes through the consent interaction, which grants first-party clients silently as well.
 */
async function coverFirstPartyRequest(ctx: KoaContextWithOIDC, grant: Grant | undefined): Promise<Grant> {
  const covered = grant ?? new ctx.oidc.provider.Grant({ accountId: ctx.oidc.session!.accountId!, clientId: ctx.oidc.client!.clientId });
  let changed = !grant;
  const missing = (encountered: string, wanted: Iterable<string>) => {
    const have = new Set(encountered.split(' '));
    return [...wanted].filter((scope) => scope && !have.has(scope));
  };
  const scopes = missing(covered.getOIDCScopeEncountered(), ctx.oidc.requestParamOIDCScopes);
  if (scopes.length) covered.addOIDCScope(scopes.join(' '));
  const claims = missing(covered.getOIDCClaimsEncountered().join(' '), ctx.oidc.requestParamClaims);
  if (claims.length) covered.addOIDCClaims(claims);
  changed ||= scopes.length > 0 || claims.length > 0;
  for (const [indicator, server] of Object.entries(ctx.oidc.resourceServers ?? {})) {
    const available = (server as unknown as { scopes: Set<string> }).scopes;
    const rs = missing(covered.getResourceScopeEncountered(indicator), [...ctx.oidc.requestParamScopes].filter((s) => available.has(s)));
    if (rs.length) {
      covered.addResourceScope(indicator, rs.join(' '));
      changed = true;
    }
  }
  if (changed) await covered.save();
  return covered;
}

/**
 * The grant this authorization request issues under (oidc-provider's `loadExistingGrant`): the
 * consent just given or the session's own grant, else a copy of the remembered consent made for
 * this session, so nothing is asked again and no two sessions share a grant. When the session's
 * own grant is the remembered one (the consent page just saved it), the memory moves to a copy:
 * the session keeps its grant (its session-bound tokens stay valid), and reuse detection there
 * cannot erase the consent other devices start from. Undefined: no consent yet.
 */
export async function loadSessionGrant(ctx: KoaContextWithOIDC, db: Db): Promise<Grant | undefined> {
  const accountId = ctx.oidc.session!.accountId!;
  const clientId = ctx.oidc.client!.clientId;
  // A grant belongs to one user and client; never use one across either.
  const load = async (id: string | undefined) => {
    const grant = id ? await ctx.oidc.provider.Grant.find(id) : undefined;
    return grant && grant.accountId === accountId && grant.clientId === clientId ? grant : undefined;
  };
  const own = (await load(ctx.oidc.result?.consent?.grantId)) ?? (await load(ctx.oidc.session!.grantIdFor(clientId)));
  if ((ctx.oidc.client as unknown as { first_party?: boolean }).first_party) return coverFirstPartyRequest(ctx, own);
  const remembered = await findRememberedGrant(db, accountId, clientId);
  if (own) {
    if (own.jti === remembered) await rememberGrant(db, accountId, clientId, (await copyGrant(ctx, own)).jti!);
    return own;
  }
  const template = await load(remembered);
  return template ? copyGrant(ctx, template) : undefined;
}
