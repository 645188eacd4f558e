import type { Knex } from 'knex';

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary();
    t.text('email').notNullable();
    t.text('name');
    t.boolean('email_verified').notNullable().defaultTo(false);
    t.text('status').notNullable().defaultTo('active');
    t.text('password_hash');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  // Email is unique case-insensitively; lookups use lower(email) and hit this index.
  await knex.raw('CREATE UNIQUE INDEX users_email_lower_unique ON users (lower(email))');
  await knex.raw('CREATE INDEX users_created_at ON users (created_at)');

  // oidc-provider artifacts. The primary key is the SHA-256 of the artifact id, because ids
  // of tokens, codes and sessions are bearer secrets.
  await knex.schema.createTable('oidc_payloads', (t) => {
    t.text('model').notNullable();
    t.text('id_hash').notNullable();
    t.jsonb('payload').notNullable();
    // For models found by uid or user code: the id sealed with the at-rest key (see the adapter).
    t.text('id_sealed');
    t.text('grant_id');
    t.text('uid');
    t.text('user_code');
    t.text('account_id');
    t.text('client_id');
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('consumed_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['model', 'id_hash']);
  });
  await knex.raw('CREATE INDEX oidc_payloads_grant_id ON oidc_payloads (grant_id) WHERE grant_id IS NOT NULL');
  // Not unique: Session.save can briefly hold two rows for one uid (oidc-provider #1145).
  await knex.raw('CREATE INDEX oidc_payloads_uid ON oidc_payloads (model, uid) WHERE uid IS NOT NULL');
  await knex.raw('CREATE INDEX oidc_payloads_user_code ON oidc_payloads (model, user_code) WHERE user_code IS NOT NULL');
  await knex.raw('CREATE INDEX oidc_payloads_account_id ON oidc_payloads (account_id, model) WHERE account_id IS NOT NULL');
  await knex.raw('CREATE INDEX oidc_payloads_client_id ON oidc_payloads (client_id) WHERE client_id IS NOT NULL');
  await knex.raw('CREATE INDEX oidc_payloads_expires_at ON oidc_payloads (expires_at) WHERE expires_at IS NOT NULL');

  await knex.schema.createTable('oidc_clients', (t) => {
    t.text('client_id').primary();
    t.jsonb('metadata').notNullable();
    // Encrypted (AES-256-GCM): oidc-provider needs the plain secret to verify client_secret_basic/post.
    t.text('secret_enc');
    t.boolean('first_party').notNullable().defaultTo(false);
    t.boolean('require_verified_email').notNullable().defaultTo(false);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  // Remembered consent: the grant a user gave a third-party client, reused by later sessions.
  await knex.schema.createTable('remembered_grants', (t) => {
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('client_id').notNullable().references('oidc_clients.client_id').onDelete('CASCADE');
    t.text('grant_id').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['user_id', 'client_id']);
  });

  // What each browser session has proven and when (per factor), keyed by the provider's
  // session uid; the assurance function turns this into acr/amr and expires elevations.
  await knex.schema.createTable('session_proofs', (t) => {
    t.text('session_uid').primary();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.jsonb('proofs').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE INDEX session_proofs_user ON session_proofs (user_id)');

  await knex.schema.createTable('signing_keys', (t) => {
    t.text('kid').primary();
    t.text('alg').notNullable();
    t.jsonb('public_jwk').notNullable();
    t.text('private_jwk_enc').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Set when a newer key replaces this one: it still verifies until retire_after, then is deleted.
    t.timestamp('rotated_at', { useTz: true });
    t.timestamp('retire_after', { useTz: true });
  });

  await knex.schema.createTable('audit_events', (t) => {
    t.bigIncrements('id');
    t.timestamp('at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('type').notNullable();
    t.uuid('user_id');
    t.text('client_id');
    t.text('ip');
    t.text('user_agent');
    t.text('request_id');
    t.jsonb('data').notNullable().defaultTo('{}');
  });
  await knex.raw('CREATE INDEX audit_events_user_at ON audit_events (user_id, at DESC) WHERE user_id IS NOT NULL');
  await knex.raw('CREATE INDEX audit_events_type_at ON audit_events (type, at DESC)');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
