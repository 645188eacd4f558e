import type { Knex } from 'knex';

// Account deletion: the schedule (grace period), the Security Event Token outbox, the receipts
// kept after a purge, and a pseudonym column for audit rows whose user was purged.
export async function up(knex: Knex): Promise<void> {
  // One row per account waiting out its grace period; cancelling deletes it.
  await knex.schema.createTable('account_deletions', (t) => {
    t.uuid('user_id').primary().references('users.id').onDelete('CASCADE');
    t.timestamp('requested_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('delete_after', { useTz: true }).notNullable();
    t.text('requested_by').notNullable(); // 'user' | 'operator'
    t.text('client_id'); // the relying party that sent the user, if any
    // The clients told by SET at scheduling: they are told again on cancel and at the purge.
    t.jsonb('notify_clients').notNullable().defaultTo('[]');
    // Replaces the user id in the audit trail after the purge (random, so it links to nothing).
    t.uuid('pseudonym').notNullable();
    t.timestamp('reminded_at', { useTz: true });
  });
  await knex.raw('CREATE INDEX account_deletions_due ON account_deletions (delete_after)');

  // Security Event Tokens (RFC 8417) waiting for delivery (RFC 8935). The claims (they name the
  // user's subject) are sealed with the at-rest key and dropped once delivered or given up.
  await knex.schema.createTable('security_event_outbox', (t) => {
    t.uuid('id').primary();
    t.text('client_id').notNullable();
    t.text('event').notNullable();
    t.text('sealed');
    t.text('status').notNullable().defaultTo('pending'); // pending | delivered | failed
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('next_attempt_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('locked_until', { useTz: true });
    t.text('last_error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('delivered_at', { useTz: true });
  });
  await knex.raw("CREATE INDEX security_event_outbox_due ON security_event_outbox (next_attempt_at) WHERE status = 'pending'");

  // What a purge removed, with no personal data: the pseudonym, the times, row counts per table.
  await knex.schema.createTable('deletion_receipts', (t) => {
    t.uuid('pseudonym').primary();
    t.timestamp('requested_at', { useTz: true });
    t.timestamp('scheduled_for', { useTz: true });
    t.timestamp('purged_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.text('trigger').notNullable(); // 'grace-expired' | 'operator-now'
    t.jsonb('rows').notNullable();
  });

  await knex.schema.alterTable('audit_events', (t) => {
    t.uuid('user_pseudonym');
  });
  await knex.raw('CREATE INDEX audit_events_pseudonym ON audit_events (user_pseudonym) WHERE user_pseudonym IS NOT NULL');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
