import type { Knex } from 'knex';

// Emailed links (verification, password reset, magic link, email change), the mail outbox, and
// the shared rate-limit counters.
export async function up(knex: Knex): Promise<void> {
  // One row per emailed link. The link carries 32 random bytes; only their SHA-256 is stored.
  await knex.schema.createTable('link_tokens', (t) => {
    t.bigIncrements('id');
    t.text('token_hash').notNullable().unique();
    t.text('purpose').notNullable();
    t.uuid('user_id').references('users.id').onDelete('CASCADE');
    // When set, the link only works while the user's email is still this address: a link sent to
    // an address the account no longer has is dead.
    t.text('bound_email');
    t.jsonb('data').notNullable().defaultTo('{}');
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.timestamp('consumed_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('CREATE INDEX link_tokens_user_purpose ON link_tokens (user_id, purpose) WHERE consumed_at IS NULL');
  await knex.raw('CREATE INDEX link_tokens_expires_at ON link_tokens (expires_at)');

  // Mail is written here in the request's transaction and delivered afterwards, with retries.
  // The message (it holds the link) is sealed with the at-rest key and dropped once sent.
  await knex.schema.createTable('mail_outbox', (t) => {
    t.uuid('id').primary();
    t.text('template').notNullable();
    t.text('sealed');
    t.text('status').notNullable().defaultTo('pending'); // pending | sent | failed
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('next_attempt_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('locked_until', { useTz: true });
    t.text('last_error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('sent_at', { useTz: true });
  });
  await knex.raw("CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'pending'");
  await knex.raw('CREATE INDEX mail_outbox_created_at ON mail_outbox (created_at)');

  // rate-limiter-flexible's RateLimiterPostgres table (its own schema), shared by every instance.
  await knex.schema.createTable('rate_limits', (t) => {
    t.string('key', 255).primary();
    t.integer('points').notNullable().defaultTo(0);
    t.bigInteger('expire');
  });
  await knex.raw('CREATE INDEX rate_limits_expire ON rate_limits (expire)');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
