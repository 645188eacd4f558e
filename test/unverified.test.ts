// The cleanup-unverified job removes stale unverified accounts, but never a federated one (a SAML
// or SCIM user whose address is outside the connection's domains is unverified by design).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { deleteStaleUnverifiedUsers } from '../src/identity/unverified.ts';
import { testDatabase, type TestDatabase } from './helpers/db.ts';

let t: TestDatabase;
before(async () => {
  t = await testDatabase();
});
after(async () => t?.cleanup());

test('stale unverified accounts go; federated and verified ones stay', async () => {
  const { db } = t;
  const old = db.raw("now() - interval '30 days'");
  const user = (email: string, verified: boolean) => ({ id: crypto.randomUUID(), email, email_verified: verified, created_at: old });
  const [abandoned, federated, verified] = [user('abandoned@example.com', false), user('contractor@elsewhere.test', false), user('kept@example.com', true)];
  await db('users').insert([abandoned, federated, verified]);
  await db('saml_connections').insert({ name: 'acme', idp_entity_id: 'https://idp.acme.test', idp_metadata: '<md/>', sp_private_key_enc: 'x', sp_certificate: 'x' });
  await db('saml_identities').insert({ connection_name: 'acme', name_id: 'contractor@elsewhere.test', user_id: federated.id });

  const removed = await db.transaction((trx) => deleteStaleUnverifiedUsers(trx, 7 * 24 * 3600));
  assert.deepEqual(removed, [abandoned.id]);
  assert.deepEqual((await db('users').orderBy('email').pluck('email')).sort(), ['contractor@elsewhere.test', 'kept@example.com']);
});
