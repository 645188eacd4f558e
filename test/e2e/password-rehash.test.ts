// argon2id parameters are upgraded transparently: after an operator changes them, a user's
// stored hash is rewritten with the new parameters at their next successful sign-in.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as oidc from 'openid-client';
import { createDb } from '../../src/db/knex.ts';
import { Browser } from '../helpers/browser.ts';
import { REDIRECT, authorize, insecure } from '../helpers/rp.ts';
import { startServer, type TestServer } from '../helpers/server.ts';

const USER = { email: 'rehash@example.com', password: 'granite kettle 1' };
let server: TestServer;

before(async () => {
  server = await startServer({ ARGON2_MEMORY_KIB: '8192', ARGON2_TIME_COST: '1' });
});
after(async () => server?.stop());

/** Restarts the server with `changes`, reading the stored hash while it is down (PGlite has one owner). */
async function restartReadingHash(changes: Record<string, string> = {}): Promise<string> {
  let hash = '';
  await server.restart(changes, async () => {
    const db = createDb({ databaseUrl: server.env.DATABASE_URL || undefined, dataDir: server.env.DATA_DIR!, databasePoolMax: 1 });
    try {
      hash = (await db('users').where({ email: USER.email }).first('password_hash')).password_hash;
    } finally {
      await db.destroy();
    }
  });
  return hash;
}

test('a sign-in after the parameters change rewrites the hash with them; the password keeps working', async () => {
  await server.cli(['users', 'create', '--email', USER.email, '--password', USER.password]);
  const created = (await server.cli(['clients', 'create', '--id', 'rp', '--first-party', '--redirect-uri', REDIRECT])) as { client_secret: string };
  const signIn = async () => {
    const rp = await oidc.discovery(new URL(server.issuer), 'rp', created.client_secret, undefined, insecure);
    return (await authorize(rp, new Browser(), USER)).tokens;
  };

  const original = await restartReadingHash({ ARGON2_MEMORY_KIB: '12288', ARGON2_TIME_COST: '3' });
  assert.match(original, /^\$argon2id\$v=19\$m=8192,p=1,t=1\$/);
  assert.ok(await signIn(), 'the old hash verifies under the new parameters');
  const upgraded = await restartReadingHash();
  assert.match(upgraded, /^\$argon2id\$v=19\$m=12288,p=1,t=3\$/, 'rewritten at that sign-in');
  assert.ok(await signIn(), 'and the rewritten hash verifies');
  assert.equal(await restartReadingHash(), upgraded, 'no further rewrite once current');
});
