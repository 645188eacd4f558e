import type { Knex } from 'knex';

// Device sessions: one row per sign-in, tied to oidc-provider's session uid (the uid survives id
// rotation), with what the account page shows about it; and the devices and addresses a user has
// signed in from, so a sign-in from a new one is noticed. Rows go with the user (user_id).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('device_sessions', (t) => {
    // Public handle for the account page and the CLI: not a secret, and not the session's id.
    t.uuid('id').primary();
    t.text('session_uid').notNullable().unique();
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('device').notNullable(); // "Chrome on macOS"
    t.text('user_agent');
    t.text('ip');
    t.jsonb('methods').notNullable().defaultTo('[]');
    t.text('acr');
    t.boolean('remember').notNullable().defaultTo(false);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Written at most once a minute per session.
    t.timestamp('last_active_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_auth_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE INDEX device_sessions_user ON device_sessions (user_id, last_active_at DESC)');

  // What "seen before" means for new-device mail: a device name or an address of an earlier sign-in.
  await knex.schema.createTable('known_devices', (t) => {
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('kind').notNullable(); // 'device' | 'ip'
    t.text('value').notNullable();
    t.timestamp('first_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_seen_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['user_id', 'kind', 'value']);
  });
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
