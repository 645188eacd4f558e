// The applications a user has granted access to (oidc-provider grants), for /account/apps and
// the Account API: list them, and "Remove access": the client's grants, codes and tokens go at
// once (JWT access tokens name their grant and the Account API checks it exists), and so does
// the remembered consent, so the next sign-in asks again.
import type { Db } from '../../db/knex.ts';
import { ACCOUNT_CLIENT_ID } from '../../oidc/provider.ts';

export interface GrantedApp {
  clientId: string;
  /** OIDC scopes and API scopes (by resource) the user granted. */
  scopes: string[];
  /** When the oldest live grant for this client was created (first consent or sign-in). */
  grantedAt: Date;
  /** When the newest one was (the latest sign-in that issued one). */
  lastGrantedAt: Date;
}

interface GrantPayload {
  openid?: { scope?: string };
  resources?: Record<string, string>;
}

export async function listGrantedApps(db: Db, userId: string): Promise<GrantedApp[]> {
  const rows = (await db('oidc_payloads')
    .where({ model: 'Grant', account_id: userId })
    .whereNot({ client_id: ACCOUNT_CLIENT_ID })
    .where((q) => q.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()))
    .orderBy('created_at')
    .select('client_id', 'payload', 'created_at')) as { client_id: string; payload: GrantPayload; created_at: Date }[];
  const apps = new Map<string, { scopes: Set<string>; grantedAt: Date; lastGrantedAt: Date }>();
  for (const row of rows) {
    const app = apps.get(row.client_id) ?? { scopes: new Set<string>(), grantedAt: row.created_at, lastGrantedAt: row.created_at };
    for (const scope of row.payload.openid?.scope?.split(' ') ?? []) if (scope) app.scopes.add(scope);
    for (const scopes of Object.values(row.payload.resources ?? {})) for (const scope of scopes.split(' ')) if (scope) app.scopes.add(scope);
    if (row.created_at > app.lastGrantedAt) app.lastGrantedAt = row.created_at;
    apps.set(row.client_id, app);
  }
  return [...apps].map(([clientId, app]) => ({ clientId, scopes: [...app.scopes], grantedAt: app.grantedAt, lastGrantedAt: app.lastGrantedAt }));
}

/**
 * Revokes every grant the user gave `clientId` and everything issued under them (authorization
 * codes, access and refresh tokens), and forgets the consent. Sessions stay: the user is still
 * signed in here, the application just has to ask again. Returns the number of rows removed.
 */
export async function removeAppAccess(db: Db, userId: string, clientId: string): Promise<number> {
  // Client ids are 1-128 of A-Z a-z 0-9 . _ ~ - (anything else, a NUL included, names no client).
  if (clientId === ACCOUNT_CLIENT_ID || !/^[A-Za-z0-9._~-]{1,128}$/.test(clientId)) return 0;
  return db.transaction(async (trx) => {
    // returning(): PGlite's driver reports no row count for DELETE.
    const removed = await trx('oidc_payloads').where({ account_id: userId, client_id: clientId }).whereNot({ model: 'Session' }).delete(['model']);
    await trx('remembered_grants').where({ user_id: userId, client_id: clientId }).delete();
    return removed.length;
  });
}
