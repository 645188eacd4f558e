// The audit trail as a tamper-evident and erasable record: the background sealer chains every row
// (also with two instances and sign-ins in flight at once: one chain, no fork); `audit verify`
// passes on an intact chain and names the first broken row when a row was edited (chained or
// personal fields) or deleted by SQL; a purged user's rows lose their personal fields and salt
// while the chain still verifies; `audit list` filters by user, type and limit.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { createDb, type Db } from '../../src/db/knex.ts';
import { Browser, asPage } from '../helpers/browser.ts';
import { REDIRECT, authorize, insecure, type Credentials } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const POSTGRES = Boolean(process.env.DATABASE_URL);
let server: TestServer;
let rp: oidc.Configuration;
const alice: Credentials = { email: 'alice@example.com', password: 'correct amber password' };
const bob: Credentials = { email: 'bob@example.com', password: 'bob correct password' };
let aliceId: string;
let bobId: string;

interface Verify {
  ok: boolean;
  rows: number;
  unsealed: number;
  broken?: { seq: number; id: string | null; reason: string };
}

/** Runs `fn` against the server's database (PostgreSQL directly; PGlite while the server is stopped). */
async function withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const open = () => createDb({ databaseUrl: server.env.DATABASE_URL || undefined, dataDir: server.env.DATA_DIR!, databasePoolMax: 2 });
  let result: T | undefined;
  const run = async () => {
    const db = open();
    try {
      result = await fn(db);
    } finally {
      await db.destroy();
    }
  };
  if (server.env.DATABASE_URL) await run();
  else await server.restart({}, run);
  return result as T;
}

async function verify(): Promise<{ code: number; result: Verify; text: string }> {
  const json = await server.cliRaw(['audit', 'verify', '--json']);
  const text = await server.cliRaw(['audit', 'verify']);
  return { code: json.code, result: JSON.parse(json.stdout) as Verify, text: text.stdout + text.stderr };
}

async function failedSignIn(target: TestServer, email: string, browser = new Browser('Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0')) {
  const url = oidc.buildAuthorizationUrl(rp, {
    redirect_uri: REDIRECT,
    scope: 'openid',
    code_challenge: await oidc.calculatePKCECodeChallenge(oidc.randomPKCECodeVerifier()),
    code_challenge_method: 'S256',
  });
  const page = asPage(await browser.get(url.href.replace(server.issuer, target.url)));
  return asPage(await browser.submit(page, 'form[action$="/login"]', { email, password: 'a wrong password' }));
}

before(async () => {
  server = await startServer();
  aliceId = ((await server.cli(['users', 'create', '--email', alice.email, '--password', alice.password, '--name', 'Alice'])) as { id: string }).id;
  bobId = ((await server.cli(['users', 'create', '--email', bob.email, '--password', bob.password])) as { id: string }).id;
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
});
after(async () => server?.stop());

describe('audit hash chain', () => {
  test('the sealer chains rows in the background; verify passes and counts them', async () => {
    await authorize(rp, new Browser(), alice);
    assert.equal((await failedSignIn(server, alice.email)).status, 401);
    assert.equal((await failedSignIn(server, bob.email)).status, 401);
    // Without anyone calling verify, the newest row gets a seq within a few seconds.
    const deadline = Date.now() + 10_000;
    let newest: { seq: number | null } | undefined;
    while (Date.now() < deadline) {
      newest = ((await server.cli(['audit', 'list', '--limit', '1'])) as { seq: number | null }[])[0];
      if (newest?.seq) break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(newest?.seq, 'the background sealer sealed the newest row');
    const { code, result, text } = await verify();
    assert.equal(code, 0);
    assert.equal(result.ok, true);
    assert.ok(result.rows >= 5, `rows counted: ${result.rows}`);
    assert.match(text, new RegExp(`audit chain intact: ${result.rows} rows`));
  });

  test('sign-ins in flight at once on two instances make one chain, no fork', async (t) => {
    if (!POSTGRES) return t.skip('needs DATABASE_URL: embedded PGlite has one connection and one process');
    const other = await server.startAnother({ shareIssuer: true });
    try {
      const before = (await verify()).result.rows;
      const statuses = await Promise.all(Array.from({ length: 24 }, (_, i) => failedSignIn(i % 2 ? other : server, `nobody${i}@example.com`).then((p) => p.status)));
      assert.ok(statuses.every((s) => s === 401 || s === 429), statuses.join(','));
      await new Promise((r) => setTimeout(r, 2500)); // both sealers run (one at a time, by the lock)
      const { code, result } = await verify();
      assert.equal(code, 0, JSON.stringify(result));
      assert.ok(result.rows >= before + 24, `${result.rows} rows after ${before}`);
      const counts = await withDb(async (db) => (await db('audit_events').select(db.raw('count(*)::int AS n, count(DISTINCT seq)::int AS seqs, max(seq)::int AS max')))[0]);
      assert.deepEqual(counts, { n: result.rows, seqs: result.rows, max: result.rows }, 'every row has its own seq, 1..n');
    } finally {
      await other.stop();
    }
  });

  test('audit list filters by user, type (public or stored name) and limit; JSON lines by default', async () => {
    const failed = (await server.cli(['audit', 'list', '--user', alice.email, '--type', 'login.failed'])) as { type: string; event: string; user_id: string; ip: string; user_agent: string }[];
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.type, 'login.failure');
    assert.equal(failed[0]!.event, 'login.failed');
    assert.equal(failed[0]!.user_id, aliceId);
    assert.ok(failed[0]!.ip, 'the operator sees the IP');
    assert.match(failed[0]!.user_agent, /Firefox/);
    const stored = (await server.cli(['audit', 'list', '--user', alice.email, '--type', 'login.failure'])) as unknown[];
    assert.equal(stored.length, 1);
    const lines = (await server.cliRaw(['audit', 'list', '--limit', '3'])).stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    for (const line of lines) assert.equal(typeof (JSON.parse(line) as { type: string }).type, 'string');
    assert.equal((await server.cliRaw(['audit', 'list', '--user', 'nobody@example.com', '--json'])).code, 1);
  });

  test('a purged user: personal fields and salt erased, commitments kept, and verify still passes', async () => {
    const before = await withDb((db) => db('audit_events').where({ user_id: aliceId }).select('id', 'subject_commitment'));
    assert.ok(before.length >= 3);
    assert.ok(before.every((r) => /^[0-9a-f]{64}$/.test(r.subject_commitment)), 'each of her rows carries a commitment');
    await server.cli(['users', 'delete', alice.email, '--now']);
    const { code, result } = await verify();
    assert.equal(code, 0, JSON.stringify(result));
    await withDb(async (db) => {
      const rows = await db('audit_events').whereIn('id', before.map((r) => r.id)).select('user_id', 'ip', 'user_agent', 'data', 'subject_commitment', 'hash');
      for (const r of rows) {
        assert.equal(r.user_id, null);
        assert.equal(r.ip, null);
        assert.equal(r.user_agent, null);
        assert.equal(r.data.emailRef, undefined);
        assert.match(r.subject_commitment, /^[0-9a-f]{64}$/);
      }
      assert.equal((await db('audit_salts').where({ user_id: aliceId })).length, 0, 'her salt is gone');
      assert.equal((await db('audit_salts').where({ user_id: bobId })).length, 1, "bob's stays");
      const text = JSON.stringify(await db('audit_events').select('*'));
      assert.ok(!text.includes(alice.email) && !text.includes(aliceId), 'no audit row names her');
    });
  });

  test('a row edited by SQL (chained field, then personal field) or deleted: verify exits 1 naming it', async () => {
    const target = await withDb(async (db) => db('audit_events').where({ user_id: bobId, type: 'login.failure' }).first('id', 'seq', 'data', 'ip'));
    assert.ok(target?.seq, "bob's failed sign-in is sealed");

    await withDb((db) => db('audit_events').where({ id: target.id }).update({ data: JSON.stringify({ ...target.data, method: 'passkey' }) }));
    let { code, result, text } = await verify();
    assert.equal(code, 1);
    assert.deepEqual(result.broken, { seq: Number(target.seq), id: String(target.id), reason: 'row content does not match its hash' });
    assert.match(text, new RegExp(`BROKEN at seq ${target.seq} \\(row id ${target.id}\\)`));

    // Restored, it verifies again; then the IP (outside the chain, bound by the commitment) is edited.
    await withDb((db) => db('audit_events').where({ id: target.id }).update({ data: JSON.stringify(target.data), ip: '198.51.100.7' }));
    ({ code, result } = await verify());
    assert.equal(code, 1);
    assert.deepEqual(result.broken, { seq: Number(target.seq), id: String(target.id), reason: 'personal fields do not match the commitment' });

    await withDb((db) => db('audit_events').where({ id: target.id }).update({ ip: target.ip }));
    assert.equal((await verify()).code, 0, 'restored');

    await withDb((db) => db('audit_events').where({ id: target.id }).delete());
    ({ code, result } = await verify());
    assert.equal(code, 1);
    assert.equal(result.broken?.seq, Number(target.seq));
    assert.match(result.broken!.reason, /row missing/);
  });
});
