// Every hot lookup (token, session and sign-in paths) is served by an index. The queries are the
// ones the code really sends: each function runs against a fresh PostgreSQL database while a
// listener records its SQL, and the recorded statements are then EXPLAINed with sequential scans
// priced out (`enable_seqscan = off`): on these small tables the planner would otherwise choose
// a sequential scan anyway, but with it off it still does when no index can answer, so a missing
// index shows up as a Seq Scan node. PostgreSQL only: plans on PGlite are the same engine, but
// the issue asks for the production database.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from '../src/db/knex.ts';
import { createAdapterClass, revokeGrantEverywhere } from '../src/oidc/adapter.ts';
import { findActiveUser, findUserByEmail, findUserById } from '../src/identity/users.ts';
import { loadSessionProofs } from '../src/sessions/proofs.ts';
import { loadPending } from '../src/flows/sign-in/pending.ts';
import { findRememberedGrant } from '../src/oidc/grants.ts';
import { postgresDatabase, type TestDatabase } from './helpers/db.ts';

const pg = process.env.DATABASE_URL;
let database: TestDatabase;
let db: Db;

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  'Relation Name'?: string;
  Plans?: PlanNode[];
}

function nodes(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)];
}

/** The statements `work` sends through knex, in order. */
async function recorded(work: () => Promise<unknown>): Promise<{ sql: string; bindings: readonly unknown[] }[]> {
  const seen: { sql: string; bindings: readonly unknown[] }[] = [];
  const listener = (q: { sql: string; bindings?: readonly unknown[] }) => seen.push({ sql: q.sql, bindings: q.bindings ?? [] });
  db.on('query', listener);
  try {
    await work().catch(() => {}); // a lookup of nothing may throw (consume); the SQL was sent
  } finally {
    db.removeListener('query', listener);
  }
  assert.ok(seen.length > 0, 'the function sent a query');
  return seen;
}

async function plan(sql: string, bindings: readonly unknown[]): Promise<PlanNode> {
  return db.transaction(async (trx) => {
    await trx.raw('SET LOCAL enable_seqscan = off');
    // The listener sees PostgreSQL's $n placeholders (in order); knex.raw takes `?`.
    const result = await trx.raw(`EXPLAIN (FORMAT JSON) ${sql.replace(/\$\d+/g, '?')}`, bindings as Knex.RawBinding[]);
    return (result.rows[0]['QUERY PLAN'] as [{ Plan: PlanNode }])[0].Plan;
  });
}

/** Asserts each statement `work` sends on `table` reads it through an index (and names the indexes used). */
async function assertIndexed(table: string, work: () => Promise<unknown>): Promise<string[]> {
  const used: string[] = [];
  for (const { sql, bindings } of await recorded(work)) {
    if (!sql.includes(`"${table}"`) && !sql.includes(` ${table} `)) continue;
    const all = nodes(await plan(sql, bindings));
    // Reads only: an UPDATE or DELETE also has a ModifyTable node naming the table.
    const scans = all.filter((n) => n['Relation Name'] === table && n['Node Type'] !== 'ModifyTable');
    assert.ok(scans.length > 0, `no scan of ${table} in the plan of: ${sql}`);
    for (const scan of scans) {
      // A bitmap heap scan reads the rows its Bitmap Index Scan children (no relation name) found.
      const indexes = scan['Node Type'] === 'Bitmap Heap Scan' ? nodes(scan).filter((n) => n['Node Type'] === 'Bitmap Index Scan') : [scan];
      for (const index of indexes) {
        assert.match(index['Node Type'], /Index/, `${table} is read by ${scan['Node Type']} in: ${sql}`);
        used.push(index['Index Name'] ?? '');
      }
      assert.ok(indexes.length > 0, `${table} is read by a bitmap scan without an index in: ${sql}`);
    }
  }
  assert.ok(used.length > 0, `no statement on ${table}`);
  return used;
}

describe('hot queries use indexes (EXPLAIN)', { skip: pg ? false : 'PostgreSQL only: set DATABASE_URL' }, () => {
  const Adapter = () => createAdapterClass(db, Buffer.alloc(32, 7), async () => undefined, { refreshReuseGraceSeconds: 5 });
  const id = crypto.randomBytes(32).toString('base64url');
  const userId = crypto.randomUUID();

  before(async () => {
    database = await postgresDatabase(pg!);
    db = database.db;
  });
  after(async () => database?.cleanup());

  test('oidc_payloads: a token, code or session by its id', async () => {
    for (const model of ['AccessToken', 'RefreshToken', 'AuthorizationCode', 'Session', 'Grant', 'Interaction']) {
      const used = await assertIndexed('oidc_payloads', () => new (Adapter())(model).find(id));
      assert.deepEqual([...new Set(used)], ['oidc_payloads_pkey'], model);
    }
  });

  test('oidc_payloads: one value as every token kind at once (introspection, revocation; adapter.ts findTokenRow)', async () => {
    const live = () => db('oidc_payloads').where((q) => q.whereNull('expires_at').orWhere('expires_at', '>', db.fn.now()));
    const used = await assertIndexed('oidc_payloads', () =>
      live().where('id_hash', crypto.createHash('sha256').update(id).digest('hex')).whereIn('model', ['AccessToken', 'ClientCredentials', 'RefreshToken']).select('model', 'payload'),
    );
    assert.deepEqual([...new Set(used)], ['oidc_payloads_pkey']);
  });

  test('oidc_payloads: consuming a code or refresh token', async () => {
    await assertIndexed('oidc_payloads', () => new (Adapter())('AuthorizationCode').consume(id));
  });

  test('oidc_payloads: a session by uid, a device code by user code', async () => {
    assert.deepEqual(await assertIndexed('oidc_payloads', () => new (Adapter())('Session').findByUid('uid-1')), ['oidc_payloads_uid']);
    assert.deepEqual(await assertIndexed('oidc_payloads', () => new (Adapter())('DeviceCode').findByUserCode('ABCD-EFGH')), ['oidc_payloads_user_code']);
  });

  test('oidc_payloads: everything under a grant (revocation, reuse)', async () => {
    assert.deepEqual(await assertIndexed('oidc_payloads', () => new (Adapter())('AccessToken').revokeByGrantId('grant-1')), ['oidc_payloads_grant_id']);
    const used = await assertIndexed('oidc_payloads', () => revokeGrantEverywhere(db, 'grant-1'));
    assert.ok(used.includes('oidc_payloads_grant_id') && used.includes('oidc_payloads_pkey'), used.join(','));
  });

  test("oidc_payloads: an account's sessions (sign out everywhere, deletion)", async () => {
    const used = await assertIndexed('oidc_payloads', () => db('oidc_payloads').where({ model: 'Session', account_id: userId }).select('payload'));
    assert.deepEqual(used, ['oidc_payloads_account_id']);
  });

  test('rate_limits: a counter by key (the upsert rate-limiter-flexible sends)', async () => {
    // rate-limiter-flexible writes through a raw connection (security/rate-limit.ts), not knex:
    // its statement, as the library builds it, is an upsert whose conflict target must be an index.
    const result = await db.raw(
      `EXPLAIN (FORMAT JSON) INSERT INTO rate_limits VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET points = CASE WHEN (rate_limits.expire <= ? OR 1=0) THEN ? ELSE rate_limits.points + (?) END, expire = CASE WHEN (rate_limits.expire <= ? OR 1=0) THEN ? ELSE rate_limits.expire END RETURNING points, expire`,
      ['login_fail_ip:k', 1, Date.now() + 1000, Date.now(), 1, 1, Date.now(), Date.now() + 1000],
    );
    const root = (result.rows[0]['QUERY PLAN'] as [{ Plan: PlanNode & { 'Conflict Arbiter Indexes'?: string[] } }])[0].Plan;
    assert.deepEqual(root['Conflict Arbiter Indexes'], ['rate_limits_pkey']);
    assert.deepEqual(await assertIndexed('rate_limits', () => db('rate_limits').where({ key: 'login_fail_ip:k' }).first()), ['rate_limits_pkey']);
  });

  test('session_proofs by session uid, pending_logins by interaction uid', async () => {
    assert.deepEqual(await assertIndexed('session_proofs', () => loadSessionProofs(db, 'session-uid', userId)), ['session_proofs_pkey']);
    assert.deepEqual(await assertIndexed('pending_logins', () => loadPending(db, 'interaction-uid')), ['pending_logins_pkey']);
  });

  test('users by lower(email), by id, and the one-query account lookup of every token', async () => {
    assert.deepEqual(await assertIndexed('users', () => findUserByEmail(db, 'Someone@Example.com')), ['users_email_lower_unique']);
    assert.deepEqual(await assertIndexed('users', () => findUserById(db, userId)), ['users_pkey']);
    assert.deepEqual(await assertIndexed('users', () => findActiveUser(db, userId)), ['users_pkey']);
    assert.deepEqual(await assertIndexed('account_deletions', () => findActiveUser(db, userId)), ['account_deletions_pkey']);
    const statements = await recorded(() => findActiveUser(db, userId));
    assert.equal(statements.length, 1, 'the deletion check is part of the user lookup');
  });

  test('remembered consent by user and client', async () => {
    await assertIndexed('remembered_grants', () => findRememberedGrant(db, userId, 'client-1'));
  });
});
