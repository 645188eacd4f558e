// The oidc-provider storage adapter against real databases: embedded PGlite always, and
// PostgreSQL too when DATABASE_URL is set. No mocks: every assertion reads the real table.
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AdapterPayload } from 'oidc-provider';
import { createDb, type Db } from '../src/db/knex.ts';
import { createAdapterClass, revokeGrantEverywhere, sweepExpired } from '../src/oidc/adapter.ts';
import { dbOptions, pgliteDatabase, testDatabase, type TestDatabase } from './helpers/db.ts';

const TABLE = 'oidc_payloads';

const TEST_KEY = Buffer.alloc(32, 7); // at-rest key for sealed ids
type AdapterClass = ReturnType<typeof createAdapterClass>;

interface StoredRow {
  model: string;
  id_hash: string;
  payload: Record<string, unknown>;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  account_id: string | null;
  client_id: string | null;
  expires_at: Date | null;
  consumed_at: Date | null;
  created_at: Date;
}

// Computed here, independently of src/security/crypto.ts.
function sha256(value: string): string {
  return crypto.createHash('sha256').update(value, 'utf8').digest('hex');
}

function newId(): string {
  return crypto.randomBytes(32).toString('base64url');
}

function epoch(): number {
  return Math.floor(Date.now() / 1000);
}

function isInvalidGrant(err: unknown): boolean {
  return err instanceof Error && err.name === 'InvalidGrant';
}

/** A token-shaped payload as oidc-provider hands it to upsert (jti included). */
function token(kind: string, id: string, grantId: string | undefined, extra: Record<string, unknown> = {}): AdapterPayload {
  const iat = epoch();
  return {
    jti: id,
    kind,
    iat,
    exp: iat + 3600,
    accountId: 'account-1',
    clientId: 'client-1',
    ...(grantId ? { grantId } : {}),
    scope: 'openid email',
    ...extra,
  } as AdapterPayload;
}

function grant(grantId: string): AdapterPayload {
  const iat = epoch();
  return { jti: grantId, kind: 'Grant', iat, exp: iat + 86_400, accountId: 'account-1', clientId: 'client-1', openid: { scope: 'openid email' } } as AdapterPayload;
}

async function rowOf(db: Db, model: string, id: string): Promise<StoredRow | undefined> {
  return db(TABLE).where({ model, id_hash: sha256(id) }).first();
}

async function countRows(db: Db, where: Record<string, unknown> = {}): Promise<number> {
  const row = await db(TABLE).where(where).first(db.raw('count(*)::int AS n'));
  return (row as { n: number }).n;
}

/** Issues a Grant plus a code, an access token and a refresh token under it. */
async function issueGrant(Adapter: AdapterClass) {
  const grantId = newId();
  const ids = { code: newId(), at: newId(), rt: newId() };
  await new Adapter('Grant').upsert(grantId, grant(grantId), 86_400);
  await new Adapter('AuthorizationCode').upsert(ids.code, token('AuthorizationCode', ids.code, grantId), 60);
  await new Adapter('AccessToken').upsert(ids.at, token('AccessToken', ids.at, grantId), 3600);
  await new Adapter('RefreshToken').upsert(ids.rt, token('RefreshToken', ids.rt, grantId), 86_400);
  return { grantId, ...ids };
}

async function grantRowCount(db: Db, grantId: string): Promise<number> {
  const row = await db(TABLE)
    .where('grant_id', grantId)
    .orWhere({ model: 'Grant', id_hash: sha256(grantId) })
    .first(db.raw('count(*)::int AS n'));
  return (row as { n: number }).n;
}

function adapterSuite(open: () => Promise<TestDatabase>): void {
  let t: TestDatabase;
  let db: Db;
  let Adapter: AdapterClass;
  const clientLookups: string[] = [];
  const clients: Record<string, AdapterPayload> = {
    'client-1': { client_id: 'client-1', redirect_uris: ['https://rp.example/cb'] } as AdapterPayload,
  };

  before(async () => {
    t = await open();
    db = t.db;
    Adapter = createAdapterClass(db, TEST_KEY, async (clientId) => {
      clientLookups.push(clientId);
      return clients[clientId];
    });
  });

  after(async () => {
    await t?.cleanup();
  });

  beforeEach(async () => {
    await db(TABLE).delete();
    clientLookups.length = 0;
  });

  it('upsert then find round-trips the payload, with jti equal to the id passed in', async () => {
    const id = newId();
    const grantId = newId();
    const payload = token('AccessToken', id, grantId, { claims: { userinfo: { email: null } }, extra: { nested: [1, 'two'] } });
    await new Adapter('AccessToken').upsert(id, payload, 3600);

    const found = await new Adapter('AccessToken').find(id);
    assert.deepEqual(found, payload);
    assert.equal(found?.jti, id);
    assert.equal('consumed' in found!, false, 'an unconsumed artifact has no consumed field');
  });

  it('stores sha256(id) as id_hash and never the id itself', async () => {
    const id = newId();
    const grantId = newId();
    await new Adapter('RefreshToken').upsert(id, token('RefreshToken', id, grantId, { sessionUid: 'uid-1' }), 3600);

    const rows: StoredRow[] = await db(TABLE).select('*');
    assert.equal(rows.length, 1);
    const row = rows[0]!;
    assert.equal(row.model, 'RefreshToken');
    assert.equal(row.id_hash, sha256(id));
    assert.match(row.id_hash, /^[0-9a-f]{64}$/);
    assert.equal('jti' in row.payload, false, 'jti is stripped at rest');
    assert.equal(JSON.stringify(row.payload).includes(id), false, 'payload must not contain the id');
    assert.equal(JSON.stringify(row).includes(id), false, 'no column may contain the id');
    // The lookup columns are filled from the payload.
    assert.equal(row.grant_id, grantId);
    assert.equal(row.client_id, 'client-1');
    assert.equal(row.account_id, 'account-1');
    assert.equal(row.uid, null);
    assert.equal(row.consumed_at, null);
    assert.ok(row.expires_at instanceof Date);

    // Also as raw text straight from PostgreSQL, bypassing any driver parsing.
    const raw = await db.raw(`SELECT payload::text AS p FROM ${TABLE} WHERE id_hash = ?`, [sha256(id)]);
    assert.equal((raw.rows[0].p as string).includes(id), false);
  });

  it('upserting an existing id replaces the payload and the expiry', async () => {
    const id = newId();
    const a = new Adapter('Session');
    await a.upsert(id, { jti: id, kind: 'Session', uid: 'uid-r', accountId: 'first' } as AdapterPayload, 60);
    const before = await rowOf(db, 'Session', id);
    await a.upsert(id, { jti: id, kind: 'Session', uid: 'uid-r', accountId: 'second' } as AdapterPayload, 7200);
    const after = await rowOf(db, 'Session', id);

    assert.equal(await countRows(db), 1);
    assert.equal((await a.find(id))?.accountId, 'second');
    assert.ok(after!.expires_at!.getTime() > before!.expires_at!.getTime() + 3_000_000);
  });

  it('find returns undefined once expiresIn has elapsed', async () => {
    const id = newId();
    const a = new Adapter('AuthorizationCode');
    await a.upsert(id, token('AuthorizationCode', id, newId()), 1);
    assert.ok(await a.find(id), 'live right after upsert');
    await sleep(1200);
    assert.equal(await a.find(id), undefined);
  });

  it('expired rows are hidden from find, findByUid and findByUserCode', async () => {
    const sid = newId();
    const dc = newId();
    await new Adapter('Session').upsert(sid, { jti: sid, kind: 'Session', uid: 'uid-exp', accountId: 'a' } as AdapterPayload, 3600);
    await new Adapter('DeviceCode').upsert(dc, token('DeviceCode', dc, undefined, { userCode: 'EXPD-CODE' }), 3600);
    assert.ok(await new Adapter('Session').findByUid('uid-exp'));
    assert.ok(await new Adapter('DeviceCode').findByUserCode('EXPD-CODE'));

    await db(TABLE).update({ expires_at: db.raw("now() - interval '1 second'") });

    assert.equal(await new Adapter('Session').find(sid), undefined);
    assert.equal(await new Adapter('Session').findByUid('uid-exp'), undefined);
    assert.equal(await new Adapter('DeviceCode').find(dc), undefined);
    assert.equal(await new Adapter('DeviceCode').findByUserCode('EXPD-CODE'), undefined);
  });

  it('expiresIn undefined means the row never expires', async () => {
    const grantId = newId();
    const a = new Adapter('Grant');
    const payload = grant(grantId);
    await a.upsert(grantId, payload);
    const row = await rowOf(db, 'Grant', grantId);
    assert.equal(row?.expires_at, null);
    assert.deepEqual(await a.find(grantId), payload);
    assert.equal(await sweepExpired(db), 0);
    assert.ok(await a.find(grantId));
  });

  it('the same id under two models is two independent rows', async () => {
    const id = newId();
    await new Adapter('AccessToken').upsert(id, token('AccessToken', id, newId()), 3600);
    await new Adapter('RefreshToken').upsert(id, token('RefreshToken', id, newId()), 3600);
    assert.equal(await countRows(db), 2);
    await new Adapter('AccessToken').destroy(id);
    assert.equal(await new Adapter('AccessToken').find(id), undefined);
    assert.equal((await new Adapter('RefreshToken').find(id))?.kind, 'RefreshToken');
  });

  it('findByUid returns the newest session row for that uid', async () => {
    const a = new Adapter('Session');
    const older = newId();
    const newer = newId();
    const other = newId();
    await a.upsert(older, { jti: older, kind: 'Session', uid: 'uid-1', accountId: 'old' } as AdapterPayload, 3600);
    await sleep(5);
    await a.upsert(newer, { jti: newer, kind: 'Session', uid: 'uid-1', accountId: 'new' } as AdapterPayload, 3600);
    await a.upsert(other, { jti: other, kind: 'Session', uid: 'uid-2', accountId: 'other' } as AdapterPayload, 3600);
    // Same uid under another model must not be returned.
    const it1 = newId();
    await new Adapter('Interaction').upsert(it1, { jti: it1, kind: 'Interaction', uid: 'uid-1', accountId: 'interaction' } as AdapterPayload, 3600);

    assert.equal((await a.findByUid('uid-1'))?.accountId, 'new');
    assert.equal((await a.findByUid('uid-2'))?.accountId, 'other');
    assert.equal(await a.findByUid('uid-none'), undefined);

    // A late re-save of the older row (oidc-provider #1145) does not make it the newest.
    await a.upsert(older, { jti: older, kind: 'Session', uid: 'uid-1', accountId: 'old-resaved' } as AdapterPayload, 3600);
    assert.equal((await a.findByUid('uid-1'))?.accountId, 'new');
  });

  it('findByUserCode returns the DeviceCode with that user code', async () => {
    const dc = newId();
    const payload = token('DeviceCode', dc, undefined, { userCode: 'ABCD-EFGH', deviceInfo: { ip: '127.0.0.1' } });
    await new Adapter('DeviceCode').upsert(dc, payload, 600);
    const other = newId();
    await new Adapter('DeviceCode').upsert(other, token('DeviceCode', other, undefined, { userCode: 'ZZZZ-ZZZZ' }), 600);

    const found = await new Adapter('DeviceCode').findByUserCode('ABCD-EFGH');
    assert.equal(found?.userCode, 'ABCD-EFGH');
    assert.deepEqual(found?.deviceInfo, { ip: '127.0.0.1' });
    assert.equal(await new Adapter('DeviceCode').findByUserCode('NOPE-NOPE'), undefined);
    assert.equal(await new Adapter('AccessToken').findByUserCode('ABCD-EFGH'), undefined);
  });

  it('consume sets consumed (epoch seconds) on the next find', async () => {
    const id = newId();
    const a = new Adapter('AuthorizationCode');
    await a.upsert(id, token('AuthorizationCode', id, newId()), 60);
    const t0 = epoch();
    await a.consume(id);
    const t1 = epoch();

    const found = await a.find(id);
    assert.equal(typeof found?.consumed, 'number');
    assert.ok(Number.isInteger(found!.consumed));
    assert.ok(found!.consumed >= t0 - 2 && found!.consumed <= t1 + 2, `consumed ${found!.consumed} not in [${t0}, ${t1}]`);
    assert.equal(found?.jti, id);

    // Re-saving a consumed artifact (the library does so, payload.consumed included) keeps it consumed
    // and does not store `consumed` in the payload.
    await a.upsert(id, { ...found!, scope: 'openid' }, 60);
    assert.equal((await a.find(id))?.consumed, found!.consumed);
    const row = await rowOf(db, 'AuthorizationCode', id);
    assert.equal('consumed' in row!.payload, false);
  });

  it('consuming twice rejects with InvalidGrant and revokes the whole grant', async () => {
    const g = await issueGrant(Adapter);
    const unrelated = await issueGrant(Adapter);
    assert.equal(await grantRowCount(db, g.grantId), 4);

    const code = new Adapter('AuthorizationCode');
    await code.consume(g.code);
    await assert.rejects(code.consume(g.code), isInvalidGrant);

    assert.equal(await grantRowCount(db, g.grantId), 0, 'every row of the grant is gone');
    assert.equal(await new Adapter('Grant').find(g.grantId), undefined);
    assert.equal(await new Adapter('AccessToken').find(g.at), undefined);
    assert.equal(await new Adapter('RefreshToken').find(g.rt), undefined);
    assert.equal(await code.find(g.code), undefined);
    // Another grant is untouched.
    assert.equal(await grantRowCount(db, unrelated.grantId), 4);
    assert.ok(await new Adapter('Grant').find(unrelated.grantId));
  });

  it('consuming an unknown id rejects with InvalidGrant and deletes nothing', async () => {
    const g = await issueGrant(Adapter);
    await assert.rejects(new Adapter('AuthorizationCode').consume(newId()), isInvalidGrant);
    assert.equal(await grantRowCount(db, g.grantId), 4);
  });

  it('of concurrent consumes exactly one is fulfilled; the losers are InvalidGrant and kill the grant', async () => {
    for (let round = 0; round < 3; round++) {
      const g = await issueGrant(Adapter);
      const results = await Promise.allSettled(
        Array.from({ length: 5 }, () => new Adapter('RefreshToken').consume(g.rt)),
      );
      const fulfilled = results.filter((r) => r.status === 'fulfilled');
      const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      assert.equal(fulfilled.length, 1, `round ${round}: exactly one consume wins`);
      assert.equal(rejected.length, 4);
      for (const r of rejected) assert.ok(isInvalidGrant(r.reason), `unexpected rejection ${String(r.reason)}`);
      assert.equal(await grantRowCount(db, g.grantId), 0);
    }
    // Exactly two concurrent consumers, the case the brief describes.
    const g = await issueGrant(Adapter);
    const a = new Adapter('AuthorizationCode');
    const results = await Promise.allSettled([a.consume(g.code), a.consume(g.code)]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  });

  it('revokeByGrantId on AccessToken deletes only that grant\'s AccessToken rows', async () => {
    const g = await issueGrant(Adapter);
    const secondAt = newId();
    await new Adapter('AccessToken').upsert(secondAt, token('AccessToken', secondAt, g.grantId), 3600);
    const other = await issueGrant(Adapter);

    await new Adapter('AccessToken').revokeByGrantId(g.grantId);

    assert.equal(await new Adapter('AccessToken').find(g.at), undefined);
    assert.equal(await new Adapter('AccessToken').find(secondAt), undefined);
    assert.equal(await countRows(db, { model: 'AccessToken', grant_id: g.grantId }), 0);
    // Same grant, other models: kept.
    assert.ok(await new Adapter('RefreshToken').find(g.rt));
    assert.ok(await new Adapter('AuthorizationCode').find(g.code));
    assert.ok(await new Adapter('Grant').find(g.grantId));
    // Other grant: kept.
    assert.ok(await new Adapter('AccessToken').find(other.at));
    assert.equal(await grantRowCount(db, other.grantId), 4);
  });

  it('revokeGrantEverywhere deletes the Grant row and every artifact of that grant', async () => {
    const g = await issueGrant(Adapter);
    const other = await issueGrant(Adapter);
    await revokeGrantEverywhere(db, g.grantId);
    assert.equal(await grantRowCount(db, g.grantId), 0);
    assert.equal(await grantRowCount(db, other.grantId), 4);
  });

  it('destroy deletes exactly that row', async () => {
    const g = await issueGrant(Adapter);
    await new Adapter('RefreshToken').destroy(g.rt);
    assert.equal(await new Adapter('RefreshToken').find(g.rt), undefined);
    assert.equal(await rowOf(db, 'RefreshToken', g.rt), undefined);
    assert.ok(await new Adapter('AccessToken').find(g.at));
    assert.equal(await grantRowCount(db, g.grantId), 3);
    // Destroying something absent is a no-op.
    await new Adapter('RefreshToken').destroy(g.rt);
    await new Adapter('Session').destroy(newId());
  });

  it('Client find delegates to the function given to createAdapterClass', async () => {
    const a = new Adapter('Client');
    assert.deepEqual(await a.find('client-1'), clients['client-1']);
    assert.equal(await a.find('nobody'), undefined);
    assert.deepEqual(clientLookups, ['client-1', 'nobody']);
    // It never reads the artifacts table, even when a row happens to be there.
    await a.upsert('stored-client', { client_id: 'stored-client' } as AdapterPayload);
    assert.equal(await a.find('stored-client'), undefined);
    assert.deepEqual(clientLookups, ['client-1', 'nobody', 'stored-client']);
  });

  it('sweepExpired deletes expired rows in batches and keeps live ones', async () => {
    await db.raw(
      `INSERT INTO ${TABLE} (model, id_hash, payload, grant_id, expires_at)
       SELECT 'AccessToken', md5('expired-' || g), '{"kind":"AccessToken"}'::jsonb, 'g-' || (g % 7), now() - interval '1 minute'
       FROM generate_series(1, 2500) AS g`,
    );
    const live = [newId(), newId(), newId()];
    await new Adapter('AccessToken').upsert(live[0]!, token('AccessToken', live[0]!, newId()), 3600);
    await new Adapter('Session').upsert(live[1]!, { jti: live[1]!, kind: 'Session', uid: 'u' } as AdapterPayload, 3600);
    await new Adapter('Grant').upsert(live[2]!, grant(live[2]!));
    assert.equal(await countRows(db), 2503);

    assert.equal(await sweepExpired(db, 1000), 2500);
    assert.equal(await countRows(db), 3);
    assert.ok(await new Adapter('AccessToken').find(live[0]!));
    assert.ok(await new Adapter('Session').find(live[1]!));
    assert.ok(await new Adapter('Grant').find(live[2]!));
    assert.equal(await sweepExpired(db, 1000), 0);
  });

  it('sweepExpired stops after maxBatches', async () => {
    await db.raw(
      `INSERT INTO ${TABLE} (model, id_hash, payload, expires_at)
       SELECT 'AccessToken', md5('cap-' || g), '{}'::jsonb, now() - interval '1 minute'
       FROM generate_series(1, 250) AS g`,
    );
    assert.equal(await sweepExpired(db, 100, 2), 200);
    assert.equal(await countRows(db), 50);
    assert.equal(await sweepExpired(db, 100), 50);
    assert.equal(await countRows(db), 0);
  });

  // Ids that must be recoverable (the library saves what these lookups return) or must not be at rest.

  it('findByUserCode returns the DeviceCode jti so the library can save it back', async () => {
    const dc = newId();
    await new Adapter('DeviceCode').upsert(dc, token('DeviceCode', dc, undefined, { userCode: 'JTIX-JTIX' }), 600);
    const found = await new Adapter('DeviceCode').findByUserCode('JTIX-JTIX');
    assert.equal(found?.jti, dc);
    const raw = await db.raw(`SELECT payload::text AS p, id_sealed FROM ${TABLE} WHERE model = 'DeviceCode'`);
    assert.equal((raw.rows[0].p as string).includes(dc), false);
    assert.equal((raw.rows[0].id_sealed as string).includes(dc), false, 'sealed, not in clear');
  });

  it('upserts asked at once share statements yet each persists; a key saved twice keeps its last payload; a bad row fails alone', async () => {
    const statements: string[] = [];
    const onQuery = (q: { sql: string }) => {
      if (/^insert into "oidc_payloads"/i.test(q.sql)) statements.push(q.sql);
    };
    db.on('query', onQuery);
    try {
      const ids = Array.from({ length: 20 }, () => newId());
      const grantId = newId();
      const twice = ids[0]!;
      await Promise.all([
        ...ids.map((id) => new Adapter('AccessToken').upsert(id, token('AccessToken', id, grantId, { n: 1 }), 3600)),
        new Adapter('AccessToken').upsert(twice, token('AccessToken', twice, grantId, { n: 2 }), 3600),
      ]);
      assert.ok(statements.length < ids.length, `21 upserts in one turn took ${statements.length} statements`);
      for (const id of ids.slice(1)) assert.equal((await new Adapter('AccessToken').find(id))?.n, 1);
      assert.equal((await new Adapter('AccessToken').find(twice))?.n, 2, 'the last save of a key wins');

      // PostgreSQL refuses a NUL in jsonb text: that row's save fails, the others in its batch land.
      const good = newId();
      const bad = newId();
      const results = await Promise.allSettled([
        new Adapter('AccessToken').upsert(good, token('AccessToken', good, grantId), 3600),
        new Adapter('AccessToken').upsert(bad, token('AccessToken', bad, grantId, { broken: 'a\u0000b' }), 3600),
      ]);
      assert.equal(results[0]!.status, 'fulfilled');
      assert.equal(results[1]!.status, 'rejected');
      assert.ok(await new Adapter('AccessToken').find(good));
      assert.equal(await new Adapter('AccessToken').find(bad), undefined);
    } finally {
      db.off('query', onQuery);
    }
  });

  it('an Interaction row does not hold the Session id (the session cookie) at rest', async () => {
    const sessionId = newId();
    const uid = newId();
    await new Adapter('Interaction').upsert(uid, {
      jti: uid,
      kind: 'Interaction',
      session: { accountId: 'account-1', uid: 'session-uid', cookie: sessionId },
      returnTo: `https://op.example/auth/${uid}`,
    } as unknown as AdapterPayload, 3600);
    const raw = await db.raw(`SELECT payload::text AS p FROM ${TABLE} WHERE model = 'Interaction'`);
    assert.equal((raw.rows[0].p as string).includes(sessionId), false);
  });
}

describe('oidc adapter on embedded PGlite', () => {
  adapterSuite(pgliteDatabase);
});

describe('oidc adapter on PostgreSQL', { skip: !process.env.DATABASE_URL && 'DATABASE_URL not set' }, () => {
  adapterSuite(testDatabase);

  describe('two knex pools on one database', () => {
    let t: TestDatabase;
    let db2: Db;
    let A1: AdapterClass;
    let A2: AdapterClass;
    const noClients = async () => undefined;

    before(async () => {
      t = await testDatabase();
      db2 = createDb(dbOptions(t.config));
      A1 = createAdapterClass(t.db, TEST_KEY, noClients);
      A2 = createAdapterClass(db2, TEST_KEY, noClients);
    });

    after(async () => {
      await db2?.destroy();
      await t?.cleanup();
    });

    it('an upsert through one pool is found through the other', async () => {
      const id = newId();
      const payload = token('AccessToken', id, newId());
      await new A1('AccessToken').upsert(id, payload, 3600);
      assert.deepEqual(await new A2('AccessToken').find(id), payload);
      await new A2('AccessToken').destroy(id);
      assert.equal(await new A1('AccessToken').find(id), undefined);
    });

    it('a consume through one pool is seen by the other, and a second consume there revokes the grant', async () => {
      const g = await issueGrant(A1);
      await new A1('AuthorizationCode').consume(g.code);
      const seen = await new A2('AuthorizationCode').find(g.code);
      assert.equal(typeof seen?.consumed, 'number');

      await assert.rejects(new A2('AuthorizationCode').consume(g.code), isInvalidGrant);
      assert.equal(await new A1('Grant').find(g.grantId), undefined);
      assert.equal(await new A1('AccessToken').find(g.at), undefined);
      assert.equal(await grantRowCount(t.db, g.grantId), 0);
    });

    it('concurrent consumes split across the pools: exactly one wins', async () => {
      for (let round = 0; round < 5; round++) {
        const g = await issueGrant(A1);
        const results = await Promise.allSettled([
          new A1('RefreshToken').consume(g.rt),
          new A2('RefreshToken').consume(g.rt),
          new A1('RefreshToken').consume(g.rt),
          new A2('RefreshToken').consume(g.rt),
        ]);
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`);
        for (const r of results) if (r.status === 'rejected') assert.ok(isInvalidGrant(r.reason));
        assert.equal(await grantRowCount(db2, g.grantId), 0);
      }
    });
  });
});
