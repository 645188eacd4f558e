import type { Knex } from 'knex';

// Tamper-evident, erasable audit trail and operator webhooks (issue 12).
// 1. audit_events rows are chained by a sealer (src/security/audit-chain.ts): `seq` and `hash` are
//    set after the row is written, in id order, under an advisory lock, so requests never wait on
//    each other. The chained canonical form holds no personal data: the user id, IP, user agent
//    and personal data keys are bound only through `subject_commitment`, an HMAC keyed with the
//    user's salt in audit_salts. A purge erases those fields and the salt; the chain still verifies.
// 2. Webhooks share the Security Event Token outbox (one table, one lease/retry/backoff loop): a
//    row is either a SET for a client (`kind = 'set'`) or an audit event for a webhook.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('audit_salts', (t) => {
    t.uuid('user_id').primary().references('users.id').onDelete('CASCADE');
    t.binary('salt').notNullable();
  });
  await knex.schema.alterTable('audit_events', (t) => {
    t.bigInteger('seq').unique();
    t.text('prev_hash');
    t.text('hash');
    t.text('subject_commitment');
  });
  await knex.raw('CREATE INDEX audit_events_unsealed ON audit_events (id) WHERE seq IS NULL');

  await knex.schema.createTable('webhooks', (t) => {
    t.uuid('id').primary();
    t.text('url').notNullable();
    // Public event names (login.failed, account.locked…); empty means every webhook event.
    t.jsonb('events').notNullable().defaultTo('[]');
    t.text('secret_sealed').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.schema.alterTable('security_event_outbox', (t) => {
    t.text('kind').notNullable().defaultTo('set'); // set | webhook
    t.uuid('webhook_id').references('webhooks.id').onDelete('CASCADE');
    t.bigInteger('audit_event_id');
  });
  await knex.raw('ALTER TABLE security_event_outbox ALTER COLUMN client_id DROP NOT NULL');
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only');
}
