// oidc-provider storage on knex: one table, keyed by (model, sha256(id)).
// Ids of tokens, codes, sessions and interactions are bearer secrets, so only their hash is
// stored and `jti` is stripped from the payload at rest (find() puts it back from the caller's id).
// Models also looked up by another key (Session by uid, DeviceCode by user code) keep their id
// sealed (AES-256-GCM), because the library saves what those lookups return.
//
// Refresh-token reuse grace (RFC 9700 §4.14.2): oidc-provider revokes the grant as soon as a
// consumed refresh token comes back. Within `refreshReuseGraceSeconds` of its rotation, a refresh
// token presented again at the token endpoint (two concurrent refreshes, a retry after a lost
// response) is shown to the library as unconsumed, so it rotates it once more: the caller gets a
// valid token set and the tokens issued by the first rotation stay valid. After the grace the
// library sees the consumed token and revokes the grant (one sign-in's family, see grants.ts).
import Provider, { errors, type Adapter, type AdapterPayload } from 'oidc-provider';
import type { Db } from '../db/knex.ts';
import { decrypt, encrypt, sha256Hex } from '../security/crypto.ts';

const TABLE = 'oidc_payloads';
const SEALED_ID_MODELS = new Set(['Session', 'DeviceCode']);

// Grants read along with the token that names them, for the rest of this provider request: the
// library looks the grant up right after the token (introspection, userinfo, refresh), and one
// statement instead of two is a large part of those requests. Only within one request, and
// forgotten as soon as this process writes or deletes the grant.
const PREFETCHED_GRANTS = Symbol('prefetchedGrants');
const GRANT_BOUND_MODELS = new Set(['AccessToken', 'RefreshToken', 'AuthorizationCode']);

function prefetchedGrants(create: boolean): Map<string, Row | null> | undefined {
  const state = Provider.ctx?.state as Record<symbol, Map<string, Row | null> | undefined> | undefined;
  if (!state) return undefined;
  if (create) state[PREFETCHED_GRANTS] ??= new Map();
  return state[PREFETCHED_GRANTS];
}

function forgetGrant(grantId: string): void {
  prefetchedGrants(false)?.delete(grantId);
}

/** Deletes a grant and every artifact issued under it, whatever its model. */
export async function revokeGrantEverywhere(db: Db, grantId: string): Promise<void> {
  forgetGrant(grantId);
  await db(TABLE)
    .where('grant_id', grantId)
    .orWhere({ model: 'Grant', id_hash: sha256Hex(grantId) })
    .delete();
}

interface Row {
  payload: AdapterPayload;
  consumed_at: Date | null;
  id_sealed?: string | null;
  in_grace?: boolean;
  /** The live grant the token names (GRANT_BOUND_MODELS), read in the same statement. */
  grant_payload?: AdapterPayload | null;
}

const COLUMNS = ['payload', 'consumed_at', 'id_sealed'];

export interface AdapterOptions {
  /** Seconds after a refresh token's rotation in which presenting it again is a retry, not reuse (0: none). */
  refreshReuseGraceSeconds?: number;
}

/** True while oidc-provider handles a refresh_token grant: the only place the grace applies. */
function inRefreshGrant(): boolean {
  const ctx = Provider.ctx;
  return ctx?.oidc?.route === 'token' && ctx.oidc.params?.grant_type === 'refresh_token';
}

/**
 * Introspection and revocation look a token up as every kind at once (access, client-credentials
 * and refresh token, in parallel): those lookups share one statement.
 */
const TOKEN_MODELS = new Set(['AccessToken', 'ClientCredentials', 'RefreshToken']);
function lookingUpAnyKind(): boolean {
  const route = Provider.ctx?.oidc?.route;
  return route === 'introspection' || route === 'revocation';
}

/** Marks the request as served within the grace, for the audit of the tokens it issues. */
function markGraceRetry(): void {
  const ctx = Provider.ctx;
  if (ctx) ctx.state.refreshGraceRetry = true;
}

/** What oidc-provider stores but never reads back, and must not sit in the database in clear. */
function scrub(model: string, payload: AdapterPayload): Omit<AdapterPayload, 'jti' | 'consumed'> {
  const { jti: _jti, consumed: _consumed, ...stored } = payload;
  if (model === 'Interaction' && stored.session) {
    // The session's id (its cookie value) is copied into every interaction; nothing reads it.
    const { cookie: _cookie, ...session } = stored.session as Record<string, unknown>;
    stored.session = session as AdapterPayload['session'];
  }
  return stored;
}

type PayloadRow = Record<string, unknown> & { model: string; id_hash: string };
const MERGED = ['payload', 'id_sealed', 'grant_id', 'uid', 'user_code', 'account_id', 'client_id', 'expires_at'];
const MAX_BATCH = 500;

/**
 * Saves rows the way concurrent requests ask for them: every upsert asked in one turn of the
 * event loop (one per request in flight, under load) goes out as one multi-row statement, and
 * each caller resumes when that statement has committed, exactly as with a statement of its own.
 * One round trip and one commit instead of one per token is most of what a token request costs
 * the database and the event loop. A key saved twice in one batch keeps its last payload; a
 * batch that fails is retried row by row, so one bad row fails only its own request.
 */
function createUpsertBatcher(db: Db) {
  type Waiter = { row: PayloadRow; resolve: () => void; reject: (err: unknown) => void };
  let pending: Waiter[] = [];
  const write = (rows: PayloadRow[]) => db(TABLE).insert(rows).onConflict(['model', 'id_hash']).merge(MERGED);

  const rowOf = (callers: Waiter[]) => callers[callers.length - 1]!.row;
  const settle = (callers: Waiter[], err?: unknown) => {
    for (const w of callers) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  };

  /** One statement for these keys; if it fails, one per key, so a bad row fails only its callers. */
  async function saveGroups(groups: Waiter[][]): Promise<void> {
    try {
      await write(groups.map(rowOf));
      groups.forEach((callers) => settle(callers));
    } catch (err) {
      if (groups.length === 1) return settle(groups[0]!, err);
      await Promise.all(groups.map((callers) => write([rowOf(callers)]).then(() => settle(callers), (rowErr: unknown) => settle(callers, rowErr))));
    }
  }

  async function flush(batch: Waiter[]): Promise<void> {
    // Callers by key, in the order they asked: the last one's row is what the key is saved as. Keys
    // are grouped before the batch is split, so no key is in two statements at once.
    const byKey = new Map<string, Waiter[]>();
    for (const w of batch) {
      const key = `${w.row.model}\0${w.row.id_hash}`;
      const callers = byKey.get(key);
      if (callers) callers.push(w);
      else byKey.set(key, [w]);
    }
    const groups = [...byKey.values()];
    const chunks: Waiter[][][] = [];
    for (let i = 0; i < groups.length; i += MAX_BATCH) chunks.push(groups.slice(i, i + MAX_BATCH));
    await Promise.all(chunks.map(saveGroups));
  }

  return (row: PayloadRow): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      pending.push({ row, resolve, reject });
      if (pending.length === 1) {
        setImmediate(() => {
          const asked = pending;
          pending = [];
          void flush(asked);
        });
      }
    });
}

export function createAdapterClass(
  db: Db,
  atRestKey: Buffer,
  findClient: (clientId: string) => Promise<AdapterPayload | undefined>,
  options: AdapterOptions = {},
) {
  const aad = (model: string) => `oidc-id:${model}`;
  const save = createUpsertBatcher(db);
  const grace = options.refreshReuseGraceSeconds ?? 0;
  // Compared on the database's clock, the one that wrote consumed_at.
  const inGrace = () => db.raw('(consumed_at > now() - make_interval(secs => ?)) as in_grace', [grace]);
  // The token's grant, if live: its key is the hash of the token's grant_id, as key() computes it.
  const grantOfRow = () =>
    db.raw(
      `(SELECT g.payload FROM ${TABLE} g WHERE g.model = 'Grant' AND g.id_hash = encode(sha256(convert_to(${TABLE}.grant_id, 'UTF8')), 'hex')
         AND (g.expires_at IS NULL OR g.expires_at > now())) AS grant_payload`,
    );
  /** Keeps the grant read with a token row for this request's Grant.find. */
  function keepGrant(row: Row | undefined): Row | undefined {
    const grantId = row?.payload.grantId;
    if (row && typeof grantId === 'string' && 'grant_payload' in row) {
      prefetchedGrants(true)?.set(grantId, row.grant_payload ? { payload: row.grant_payload, consumed_at: null } : null);
    }
    return row;
  }

  function revive(model: string, row: Row | undefined, id: string | undefined): AdapterPayload | undefined {
    if (!row) return undefined;
    const payload: AdapterPayload = { ...row.payload };
    const jti = id ?? (row.id_sealed ? decrypt(atRestKey, row.id_sealed, aad(model)) : undefined);
    if (jti !== undefined) payload.jti = jti;
    if (row.consumed_at) payload.consumed = Math.floor(row.consumed_at.getTime() / 1000);
    // A session nobody is signed in to (the library keeps one for a cookie whose session ended) has
    // no age: without its iat, the save that signs someone in dates it then. Otherwise the absolute
    // timeout (sessions/timeouts.ts) would count from the browser's first signed-out visit, and a
    // sign-in could get minutes instead of SESSION_MAX_TTL.
    if (model === 'Session' && !payload.accountId) delete payload.iat;
    return payload;
  }

  // id hash → the token models asked for it in this turn of the event loop, and their rows.
  const tokenLookups = new Map<string, { models: Set<string>; rows: Promise<Map<string, Row>> }>();
  function findTokenRow(live: () => ReturnType<Db>, model: string, idHash: string): Promise<Row | undefined> {
    let lookup = tokenLookups.get(idHash);
    if (!lookup) {
      const models = new Set<string>();
      // Runs once the caller's parallel lookups have all been asked (they are, synchronously).
      const rows = Promise.resolve().then(async () => {
        tokenLookups.delete(idHash);
        const found = (await live().where('id_hash', idHash).whereIn('model', [...models]).select(['model', ...COLUMNS, grantOfRow()])) as (Row & { model: string })[];
        return new Map(found.map((r) => [r.model, keepGrant(r)!]));
      });
      lookup = { models, rows };
      tokenLookups.set(idHash, lookup);
    }
    lookup.models.add(model);
    return lookup.rows.then((rows) => rows.get(model));
  }

  return class KnexAdapter implements Adapter {
    readonly model: string;

    constructor(model: string) {
      this.model = model;
    }

    private key(id: string) {
      return { model: this.model, id_hash: sha256Hex(id) };
    }

    private live() {
      return db(TABLE).where((q) => q.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()));
    }

    async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
      const row = {
        ...this.key(id),
        payload: JSON.stringify(scrub(this.model, payload)),
        id_sealed: SEALED_ID_MODELS.has(this.model) ? encrypt(atRestKey, id, aad(this.model)) : null,
        grant_id: payload.grantId ?? null,
        uid: payload.uid ?? null,
        user_code: payload.userCode ?? null,
        account_id: payload.accountId ?? null,
        client_id: payload.clientId ?? null,
        // The database's clock, the same one find() compares against.
        expires_at: typeof expiresIn === 'number' ? db.raw('now() + make_interval(secs => ?)', [expiresIn]) : null,
      };
      if (this.model === 'Grant') forgetGrant(id);
      await save(row);
    }

    private get graceApplies(): boolean {
      return this.model === 'RefreshToken' && grace > 0;
    }

    async find(id: string): Promise<AdapterPayload | undefined> {
      // Clients are registered through the CLI into their own table, not stored as artifacts.
      if (this.model === 'Client') return findClient(id);
      if (this.model === 'Grant') {
        const prefetched = prefetchedGrants(false);
        if (prefetched?.has(id)) {
          const row = prefetched.get(id);
          // A copy each time: the library may change the grant it gets before saving it.
          return revive(this.model, row ? { payload: structuredClone(row.payload), consumed_at: null } : undefined, id);
        }
      }
      if (this.graceApplies && inRefreshGrant()) {
        const row = keepGrant((await this.live().where(this.key(id)).first([...COLUMNS, inGrace(), grantOfRow()])) as Row | undefined);
        if (row?.in_grace) {
          markGraceRetry();
          return revive(this.model, { ...row, consumed_at: null }, id);
        }
        return revive(this.model, row, id);
      }
      if (TOKEN_MODELS.has(this.model) && lookingUpAnyKind()) {
        return revive(this.model, await findTokenRow(() => this.live(), this.model, sha256Hex(id)), id);
      }
      if (GRANT_BOUND_MODELS.has(this.model) && Provider.ctx) {
        return revive(this.model, keepGrant((await this.live().where(this.key(id)).first([...COLUMNS, grantOfRow()])) as Row | undefined), id);
      }
      const row = await this.live().where(this.key(id)).first(COLUMNS);
      return revive(this.model, row, id);
    }

    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const row = await this.live().where({ model: this.model, uid }).orderBy('created_at', 'desc').first(COLUMNS);
      return revive(this.model, row, undefined);
    }

    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const row = await this.live().where({ model: this.model, user_code: userCode }).first(COLUMNS);
      return revive(this.model, row, undefined);
    }

    async consume(id: string): Promise<void> {
      // One atomic statement: of two concurrent consumers only the first sets consumed_at.
      // The library checks isConsumed before calling us; losing that race here means the same
      // code or refresh token was redeemed twice at once, which is reuse: kill the grant. A
      // refresh token consumed within the grace is a retry: it keeps its first rotation time
      // (the grace is not extended) and this rotation proceeds.
      const updated = await db(TABLE).where(this.key(id)).whereNull('consumed_at').update({ consumed_at: db.fn.now() }, ['grant_id']);
      if (updated.length === 0) {
        const row = (await db(TABLE)
          .where(this.key(id))
          .first(this.graceApplies ? ['grant_id', inGrace()] : ['grant_id'])) as { grant_id: string | null; in_grace?: boolean } | undefined;
        if (row?.in_grace) {
          markGraceRetry();
          return;
        }
        if (row?.grant_id) await revokeGrantEverywhere(db, row.grant_id);
        throw new errors.InvalidGrant('grant request is invalid');
      }
    }

    async destroy(id: string): Promise<void> {
      if (this.model === 'Grant') forgetGrant(id);
      await db(TABLE).where(this.key(id)).delete();
    }

    async revokeByGrantId(grantId: string): Promise<void> {
      // The library calls this once per token model (in parallel); each call removes its own rows.
      forgetGrant(grantId);
      await db(TABLE).where({ model: this.model, grant_id: grantId }).delete();
    }
  };
}

/** Deletes expired rows in batches of `batchSize`, at most `maxBatches` of them. Returns rows removed. */
export async function sweepExpired(db: Db, batchSize = 1000, maxBatches = 100): Promise<number> {
  let total = 0;
  for (let i = 0; i < maxBatches; i++) {
    const result = await db.raw(
      `DELETE FROM ${TABLE} WHERE ctid IN (SELECT ctid FROM ${TABLE} WHERE expires_at < now() LIMIT ?)`,
      [batchSize],
    );
    const removed = (result as { rowCount?: number; affectedRows?: number }).rowCount ?? (result as { affectedRows?: number }).affectedRows ?? 0;
    total += removed;
    if (removed < batchSize) break;
  }
  return total;
}
