import type { Knex } from 'knex';

// Second factors (TOTP, recovery codes, passkeys) and the state of a sign-in that has proven
// its first factor but not yet the second.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('totp_credentials', (t) => {
    t.uuid('user_id').primary().references('users.id').onDelete('CASCADE');
    t.text('secret_enc').notNullable(); // AES-256-GCM with the at-rest key
    t.timestamp('confirmed_at', { useTz: true }); // null until a first valid code is entered
    t.bigInteger('last_step'); // replay protection: a step is accepted once
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('recovery_codes', (t) => {
    t.bigIncrements('id');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('code_hash').notNullable(); // SHA-256
    t.timestamp('used_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['user_id', 'code_hash']);
  });

  await knex.schema.createTable('passkeys', (t) => {
    t.text('id').primary(); // credential id, base64url
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('name').notNullable();
    t.binary('public_key').notNullable();
    t.bigInteger('counter').notNullable().defaultTo(0);
    t.jsonb('transports').notNullable().defaultTo('[]');
    t.text('device_type');
    t.boolean('backed_up').notNullable().defaultTo(false);
    t.text('aaguid');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_used_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX passkeys_user ON passkeys (user_id)');

  // WebAuthn challenges: server-side, single use, short-lived, bound to what asked for them.
  await knex.schema.createTable('webauthn_challenges', (t) => {
    t.text('challenge').primary();
    t.text('purpose').notNullable(); // 'register' | 'authenticate'
    t.text('binding').notNullable(); // interaction uid or session uid
    t.uuid('user_id');
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('consumed_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at)');

  // A sign-in between its first and second factor. Bound to the OIDC interaction (whose cookie
  // only that browser holds) and never a session: nothing protected accepts it.
  await knex.schema.createTable('pending_logins', (t) => {
    t.text('interaction_uid').primary();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.jsonb('proofs').notNullable();
    t.timestamp('expires_at', { useTz: true }).notNullable();
  });
  await knex.raw('CREATE INDEX pending_logins_expires ON pending_logins (expires_at)');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
